/*
 * mongo_stream.h: libmongoc sockets that another thread can end
 * (src/mongo_stream.c), for the MongoDB backend.
 */
#ifndef GOMASTER_MONGO_STREAM_H
#define GOMASTER_MONGO_STREAM_H

#include <mongoc/mongoc.h>

typedef struct gm_msocks gm_msocks;

/* A set for one client's sockets; NULL when out of memory. Freed by
 * gm_msocks_free, after the client (mongoc_client_destroy closes them). */
gm_msocks *gm_msocks_new(void);
void gm_msocks_free(gm_msocks *set);
/* client connects through set from now on (its stream initiator). */
void gm_msocks_attach(gm_msocks *set, mongoc_client_t *client);
/* From any thread, never blocking: shuts down every socket of set (a call
 * blocked on one fails at once) and refuses new ones. */
void gm_msocks_interrupt(gm_msocks *set);

#endif
