/* libFuzzer: lock documents as read back from MongoDB (backends/mongo.c's
 * read_row, which find_and_modify applies to the reply's "value" document).
 * read_row is static; this harness includes backends/mongo.c itself, so the
 * fuzz build leaves mongo.c out of its list of sources. Input: raw BSON bytes,
 * as a server (or whatever answers on its port) could send them. */
#include "../../backends/mongo.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bson_t doc;
  gm_row row;
  if (size > UINT32_MAX || !bson_init_static(&doc, data, size)) return 0;
  read_row(&doc, &row);
  /* Every string field comes out terminated within its buffer. */
  if (!memchr(row.owner, '\0', sizeof row.owner) ||
      !memchr(row.version, '\0', sizeof row.version) ||
      !memchr(row.done_by, '\0', sizeof row.done_by) ||
      !memchr(row.result, '\0', sizeof row.result))
    abort();
  return 0;
}
