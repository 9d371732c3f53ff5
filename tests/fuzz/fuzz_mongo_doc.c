/* libFuzzer: lock documents as read back from MongoDB (src/mongo_doc.c's
 * gm_mdoc_read, which the backend applies to every document a server
 * returns). Input: raw BSON bytes, as a server (or whatever answers on its
 * port) could send them. */
#include <stdlib.h>
#include <string.h>

#include "mongo_doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bson_t doc;
  gm_row row;
  if (size > UINT32_MAX || !bson_init_static(&doc, data, size)) return 0;
  gm_mdoc_read(&doc, &row);
  /* Every string field comes out terminated within its buffer. */
  if (!memchr(row.owner, '\0', sizeof row.owner) ||
      !memchr(row.version, '\0', sizeof row.version) ||
      !memchr(row.done_by, '\0', sizeof row.done_by) ||
      !memchr(row.result, '\0', sizeof row.result))
    abort();
  return 0;
}
