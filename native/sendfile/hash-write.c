/*
 * ocimirror hash-and-write: a fill's incoming bytes are hashed (sha256) and appended to its temp
 * file on a libuv threadpool thread, so the event loop that receives them and feeds the clients does
 * neither. On a 2-core machine the hash was 42 % of the loop thread's time during a cold 512 MiB fill,
 * time the clients waiting on that thread went without bytes.
 *
 *   hasher() -> handle                       a sha256 in progress
 *   hashWrite(handle, fd, buffers, position, piece, callback)
 *   digest(handle) -> hex string             ends the hash
 *
 * `hashWrite` hashes every buffer, in order, first; then, when `fd` is not -1, writes them at
 * `position` in writes of at most `piece` bytes (why: src/cache/fill-writer.ts, which sets it),
 * going on after short writes. `callback(err)` runs on
 * the loop thread; `err` is null or an Error whose `code` is the errno name ('ENOSPC', ...). A
 * failed write has still hashed the whole batch, so the caller never hashes those bytes again.
 * One hashWrite at a time per hasher (the caller awaits each); a second one throws EBUSY. The
 * buffers are referenced until the callback, so JS cannot free them under the thread.
 *
 * OpenSSL is Node's own (its symbols are exported to addons; headers under include/node).
 */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_* is the plainest incremental API, and Node exports it */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <node_api.h>
#include <openssl/sha.h>
#include <uv.h>

#include "hash-write.h"

#define MAX_IOV 64

typedef struct {
  SHA256_CTX ctx;
  bool busy;  /* a hashWrite is in flight */
  bool ended; /* digest() was called */
} hasher_t;

typedef struct {
  hasher_t* hasher;
  int fd;
  int64_t position;
  size_t piece; /* bytes per write(2) at most */
  size_t count;
  struct iovec* iov;
  int error; /* errno of a failed write, 0 if none */
  napi_ref owner; /* the hasher's JS handle: its finalizer must not free the hasher mid-job */
  napi_ref buffers;
  napi_ref callback;
  napi_async_work work;
} job_t;

static const napi_type_tag kHasherTag = {0x6f63696d69727272ULL, 0x686173682d777269ULL};

static napi_value throw_code(napi_env env, const char* code, const char* message) {
  napi_throw_error(env, code, message);
  return NULL;
}

static void hasher_finalize(napi_env env, void* data, void* hint) { free(data); }

static hasher_t* unwrap_hasher(napi_env env, napi_value value) {
  bool ours = false;
  napi_valuetype type = napi_undefined;
  napi_typeof(env, value, &type);
  if (type != napi_object || napi_check_object_type_tag(env, value, &kHasherTag, &ours) != napi_ok || !ours) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a hasher");
    return NULL;
  }
  void* data = NULL;
  /* Every return of NULL throws: a hashWrite that returned without queueing or throwing would leave
   * its caller's promise waiting forever. */
  if (napi_unwrap(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_error(env, "EINVAL", "the hasher has no state");
    return NULL;
  }
  return data;
}

/* The call's arguments (`want` of them, else a TypeError naming `usage`) and its hasher, the first. */
static hasher_t* hasher_call(napi_env env, napi_callback_info info, size_t want, napi_value* argv, const char* usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return NULL;
  }
  return unwrap_hasher(env, argv[0]);
}

static napi_value js_hasher(napi_env env, napi_callback_info info) {
  hasher_t* h = calloc(1, sizeof *h);
  if (h == NULL) return throw_code(env, "ENOMEM", "hasher: out of memory");
  SHA256_Init(&h->ctx);
  napi_value handle;
  if (napi_create_object(env, &handle) != napi_ok || napi_type_tag_object(env, handle, &kHasherTag) != napi_ok ||
      napi_wrap(env, handle, h, hasher_finalize, NULL, NULL) != napi_ok) {
    free(h);
    return throw_code(env, "EINVAL", "hasher: could not create the handle");
  }
  return handle;
}

/* Writes job->iov at job->position in pwritev calls of at most job->piece bytes (and MAX_IOV buffers). */
static int write_all(job_t* job) {
  size_t i = 0, skip = 0; /* next byte: job->iov[i].iov_base + skip */
  int64_t at = job->position;
  for (;;) {
    while (i < job->count && job->iov[i].iov_len == skip) {
      i++;
      skip = 0;
    }
    if (i >= job->count) return 0;
    struct iovec piece[MAX_IOV];
    int n = 0;
    size_t want = 0;
    for (size_t k = i, s = skip; k < job->count && n < MAX_IOV && want < job->piece; k++, s = 0) {
      size_t len = job->iov[k].iov_len - s;
      if (len > job->piece - want) len = job->piece - want;
      piece[n].iov_base = (char*)job->iov[k].iov_base + s;
      piece[n].iov_len = len;
      n++;
      want += len;
    }
    ssize_t written = pwritev(job->fd, piece, n, (off_t)at);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (written == 0) return EIO;
    at += written;
    /* Advance past what was written, across buffers. */
    size_t left = (size_t)written;
    while (left > 0) {
      size_t rest = job->iov[i].iov_len - skip;
      if (left < rest) {
        skip += left;
        left = 0;
      } else {
        left -= rest;
        i++;
        skip = 0;
      }
    }
  }
}

static void execute(napi_env env, void* data) {
  job_t* job = data;
  for (size_t k = 0; k < job->count; k++) SHA256_Update(&job->hasher->ctx, job->iov[k].iov_base, job->iov[k].iov_len);
  if (job->fd >= 0) job->error = write_all(job);
}

static void complete(napi_env env, napi_status status, void* data) {
  job_t* job = data;
  job->hasher->busy = false;
  napi_value callback, global, err = NULL, result;
  if (napi_get_reference_value(env, job->callback, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok) {
    int error = status == napi_cancelled ? ECANCELED : job->error;
    if (error != 0) {
      char message[160];
      const char* code = uv_err_name(-error);
      snprintf(message, sizeof message, "write: %s (%s)", uv_strerror(-error), code);
      napi_value code_value, message_value;
      napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
      napi_create_error(env, code_value, message_value, &err);
    } else {
      napi_get_null(env, &err);
    }
    napi_call_function(env, global, callback, 1, &err, &result);
  }
  napi_delete_reference(env, job->owner);
  napi_delete_reference(env, job->buffers);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free(job->iov);
  free(job);
}

static napi_value js_hash_write(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  hasher_t* h = hasher_call(env, info, 6, argv, "hashWrite(hasher, fd, buffers, position, piece, callback)");
  if (h == NULL) return NULL;
  int32_t fd;
  int64_t position, piece;
  bool is_array = false;
  napi_valuetype type;
  if (napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < -1 || napi_is_array(env, argv[2], &is_array) != napi_ok ||
      !is_array || napi_get_value_int64(env, argv[3], &position) != napi_ok || position < 0 ||
      napi_get_value_int64(env, argv[4], &piece) != napi_ok || piece < 1 ||
      napi_typeof(env, argv[5], &type) != napi_ok || type != napi_function) {
    return throw_code(env, "ERR_INVALID_ARG_TYPE", "hashWrite: fd >= -1, buffers an array, position >= 0, piece >= 1, callback a function");
  }
  if (h->ended) return throw_code(env, "EINVAL", "hashWrite: the hash was already digested");
  if (h->busy) return throw_code(env, "EBUSY", "hashWrite: the previous hashWrite has not completed");

  uint32_t count;
  napi_get_array_length(env, argv[2], &count);
  job_t* job = calloc(1, sizeof *job);
  struct iovec* iov = calloc(count > 0 ? count : 1, sizeof *iov);
  if (job == NULL || iov == NULL) {
    free(job);
    free(iov);
    return throw_code(env, "ENOMEM", "hashWrite: out of memory");
  }
  for (uint32_t k = 0; k < count; k++) {
    napi_value element;
    bool is_buffer = false;
    if (napi_get_element(env, argv[2], k, &element) != napi_ok || napi_is_buffer(env, element, &is_buffer) != napi_ok ||
        !is_buffer || napi_get_buffer_info(env, element, &iov[k].iov_base, &iov[k].iov_len) != napi_ok) {
      free(job);
      free(iov);
      return throw_code(env, "ERR_INVALID_ARG_TYPE", "hashWrite: buffers must hold Buffers");
    }
  }
  job->hasher = h;
  job->fd = fd;
  job->position = position;
  job->piece = (size_t)piece;
  job->count = count;
  job->iov = iov;
  napi_value name;
  if (napi_create_reference(env, argv[0], 1, &job->owner) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &job->buffers) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &job->callback) != napi_ok ||
      napi_create_string_utf8(env, "ocimirror.hashWrite", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    if (job->owner) napi_delete_reference(env, job->owner);
    if (job->buffers) napi_delete_reference(env, job->buffers);
    if (job->callback) napi_delete_reference(env, job->callback);
    if (job->work) napi_delete_async_work(env, job->work);
    free(iov);
    free(job);
    return throw_code(env, "EINVAL", "hashWrite: could not queue the work");
  }
  h->busy = true;
  return NULL;
}

static napi_value js_digest(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  hasher_t* h = hasher_call(env, info, 1, argv, "digest(hasher)");
  if (h == NULL) return NULL;
  if (h->busy) return throw_code(env, "EBUSY", "digest: a hashWrite has not completed");
  if (h->ended) return throw_code(env, "EINVAL", "digest: already digested");
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256_Final(md, &h->ctx);
  h->ended = true;
  char hex[2 * SHA256_DIGEST_LENGTH + 1];
  for (int k = 0; k < SHA256_DIGEST_LENGTH; k++) snprintf(hex + 2 * k, 3, "%02x", md[k]);
  napi_value result;
  napi_create_string_utf8(env, hex, 2 * SHA256_DIGEST_LENGTH, &result);
  return result;
}

bool register_hash_write(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"hasher", NULL, js_hasher, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hashWrite", NULL, js_hash_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digest", NULL, js_digest, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) == napi_ok;
}
