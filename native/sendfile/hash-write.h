/* The fill's hash-and-write (hash-write.c), registered on the addon's exports by sendfile.c. */
#ifndef OCIMIRROR_HASH_WRITE_H
#define OCIMIRROR_HASH_WRITE_H
#include <stdbool.h>
#include <node_api.h>
bool register_hash_write(napi_env env, napi_value exports);
#endif
