/*
 * ocimirror sendfile addon: copies a range of a file to a connected socket with Linux sendfile(2),
 * non-blocking, driven by the Node event loop (the way nginx serves static files).
 *
 *   start(socketFd, fileFd, offset, length, callback) -> handle
 *   cancel(handle)
 *
 * `callback(err, bytesSent)` runs exactly once, always asynchronously, after both private fds are
 * closed. `err` is null or an Error whose `code` is a libuv errno name ('EPIPE', 'ECONNRESET',
 * 'ECANCELED', ...) or 'ESHORT' (the file ended before `length` bytes).
 *
 * Why the fds are dup'd: libuv already watches the socket's fd for the net.Socket that owns it,
 * and one fd can have only one watcher (uv_poll_init refuses it). epoll keys registrations by
 * (fd, open file description), so a dup is a separate registration for the same connection. The
 * dup shares the file description, hence its O_NONBLOCK flag: sendfile on it never blocks on the
 * socket. The file fd is dup'd too so that JS closing (and the kernel reusing) its fd number while a
 * transfer runs can never make us send bytes from some other file.
 *
 * Memory: a transfer is freed when two owners have let go of it: the native operation (after its
 * poll handle is closed and the callback ran) and the JS handle object (its finalizer). So
 * `cancel` on a finished transfer finds valid memory and does nothing, and a transfer whose
 * handle JS dropped keeps running until it ends. Everything runs on the loop thread.
 */
#define _GNU_SOURCE
#ifndef __linux__
#error "the ocimirror sendfile addon uses Linux sendfile(2)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "hash-write.h"

/* Bytes asked of one sendfile call. A call also blocks the loop while the kernel reads pages that
 * are not cached, so it stays small enough that a cold read is a short stall. Measured with
 * scripts/measure-sendfile.ts (512 MiB over loopback): 128-512 KiB were fastest, 64 KiB and
 * 4-16 MiB clearly slower. Override at build time with CFLAGS=-DOCIMIRROR_SENDFILE_CHUNK=... */
#ifndef OCIMIRROR_SENDFILE_CHUNK
#define OCIMIRROR_SENDFILE_CHUNK (256u << 10)
#endif

/* Bytes all transfers together may send per loop iteration, shared evenly: each poll callback
 * gets TICK_BUDGET / (transfers running), at least one CHUNK, before it returns to the loop (the
 * poll fires again on the next iteration if still writable). Alone, a transfer moves 4 MiB a
 * turn; in a herd of 32 each moves 256 KiB, so a turn stays a few ms and new requests (and the
 * fill feeding the herd) are not kept waiting behind 32 × 4 MiB of copying. */
#ifndef OCIMIRROR_SENDFILE_TICK_BUDGET
#define OCIMIRROR_SENDFILE_TICK_BUDGET (4u << 20)
#endif

/* Transfers started on this thread's loop and not finished (each Node thread has its own loop). */
static _Thread_local unsigned running;

/* Our own error: sendfile returned 0 (end of file) before the range was sent. Not an errno. */
#define ERR_SHORT (-1)

/* Marks handle objects made by this addon, so cancel() never unwraps a foreign object. */
static const napi_type_tag kHandleTag = {0x6f63696d6972726fULL, 0x7273656e6466696cULL};

typedef struct transfer {
  uv_poll_t poll; /* poll.data points back here */
  napi_env env;
  napi_ref callback;                       /* strong; released in on_close */
  napi_ref resource;                       /* strong; the async resource of async_context */
  napi_async_context async_context;
  napi_async_cleanup_hook_handle cleanup;  /* environment teardown (worker exit) */
  int sock;                                /* our dup of the socket, -1 once closed */
  int file;                                /* our dup of the file, -1 once closed */
  off_t offset;                            /* next file byte to send */
  int64_t remaining;
  int64_t sent;
  int error;      /* 0, an errno, or ERR_SHORT */
  int owners;     /* native operation + JS handle; freed at 0 */
  bool polling;   /* uv_poll_start succeeded */
  bool closing;   /* finish() ran: no more sending, cancel is a no-op */
  bool teardown;  /* the environment is going away: do not call into JS */
} transfer_t;

enum { PUMP_DONE, PUMP_WAIT, PUMP_YIELD };

static void release(transfer_t* t) {
  if (--t->owners == 0) free(t);
}

static void close_fds(transfer_t* t) {
  if (t->sock >= 0) close(t->sock);
  if (t->file >= 0) close(t->file);
  t->sock = t->file = -1;
}

/* Drops everything that ties the transfer to the JS environment. */
static void drop_js(transfer_t* t) {
  if (t->callback != NULL) napi_delete_reference(t->env, t->callback);
  if (t->async_context != NULL) napi_async_destroy(t->env, t->async_context);
  if (t->resource != NULL) napi_delete_reference(t->env, t->resource);
  if (t->cleanup != NULL) napi_remove_async_cleanup_hook(t->cleanup);
  t->callback = t->resource = NULL;
  t->async_context = NULL;
  t->cleanup = NULL;
}

/* Sends until the socket is full (WAIT), the per-callback budget is spent (YIELD), or the
 * transfer is over (DONE: t->error says how). */
static int pump(transfer_t* t) {
  size_t budget = OCIMIRROR_SENDFILE_TICK_BUDGET / (running > 0 ? running : 1);
  if (budget < OCIMIRROR_SENDFILE_CHUNK) budget = OCIMIRROR_SENDFILE_CHUNK;
  while (t->remaining > 0) {
    size_t want = OCIMIRROR_SENDFILE_CHUNK;
    if (want > budget) want = budget;
    if ((int64_t)want > t->remaining) want = (size_t)t->remaining;
    ssize_t n = sendfile(t->sock, t->file, &t->offset, want);
    if (n > 0) {
      t->sent += n;
      t->remaining -= n;
      budget -= (size_t)n;
      if (budget == 0 && t->remaining > 0) return PUMP_YIELD;
      continue;
    }
    if (n == 0) {
      t->error = ERR_SHORT;
      return PUMP_DONE;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return PUMP_WAIT;
    t->error = errno;
    return PUMP_DONE;
  }
  return PUMP_DONE;
}

static napi_value make_error(napi_env env, int error, int64_t sent) {
  const char* code;
  char message[160];
  if (error == ERR_SHORT) {
    code = "ESHORT";
    snprintf(message, sizeof message, "sendfile: the file ended after %lld bytes, before the requested range",
             (long long)sent);
  } else {
    code = uv_err_name(-error); /* libuv codes are -errno on Unix */
    snprintf(message, sizeof message, "sendfile: %s (%s)", uv_strerror(-error), code);
  }
  napi_value err = NULL, code_value, message_value, number;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok ||
      napi_create_error(env, code_value, message_value, &err) != napi_ok) {
    return NULL;
  }
  napi_value syscall;
  if (napi_create_string_utf8(env, "sendfile", NAPI_AUTO_LENGTH, &syscall) == napi_ok)
    napi_set_named_property(env, err, "syscall", syscall);
  if (error != ERR_SHORT && napi_create_int32(env, -error, &number) == napi_ok)
    napi_set_named_property(env, err, "errno", number);
  if (napi_create_int64(env, sent, &number) == napi_ok) napi_set_named_property(env, err, "bytesSent", number);
  return err;
}

/* Calls callback(err, bytesSent) from a libuv callback: with its own handle scope, through
 * napi_make_callback so that promise reactions and nextTicks queued by it run right after (as for
 * any Node I/O callback), and with a throw reported as an uncaught exception. */
static void call_js(transfer_t* t) {
  napi_env env = t->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn = NULL, recv, argv[2], result;
  if (napi_get_reference_value(env, t->callback, &fn) == napi_ok && fn != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int64(env, t->sent, &argv[1]) == napi_ok) {
    argv[0] = NULL;
    if (t->error != 0) argv[0] = make_error(env, t->error, t->sent);
    if (argv[0] == NULL) napi_get_null(env, &argv[0]);
    if (napi_make_callback(env, t->async_context, recv, fn, 2, argv, &result) == napi_pending_exception) {
      napi_value exception;
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_close(uv_handle_t* handle) {
  transfer_t* t = handle->data;
  close_fds(t);
  if (!t->teardown) call_js(t);
  drop_js(t); /* removes the teardown hook: the environment may now finish going away */
  release(t);
}

/* Ends the transfer once: stops polling, and closes the poll handle; on_close does the rest. */
static void finish(transfer_t* t, int error) {
  if (t->closing) return;
  t->closing = true;
  running--;
  if (t->error == 0) t->error = error;
  if (t->polling) uv_poll_stop(&t->poll); /* also removes the dup from epoll before it is closed */
  t->polling = false;
  uv_close((uv_handle_t*)&t->poll, on_close);
}

static void on_poll(uv_poll_t* handle, int status, int events);

/* Sends what the socket takes now; waits for writability if there is more. */
static void advance(transfer_t* t) {
  if (pump(t) == PUMP_DONE) {
    finish(t, 0);
    return;
  }
  if (!t->polling) {
    int rc = uv_poll_start(&t->poll, UV_WRITABLE, on_poll);
    if (rc != 0) {
      finish(t, -rc);
      return;
    }
    t->polling = true;
  }
}

static int socket_error(int fd) {
  int error = 0;
  socklen_t len = sizeof error;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
  return error;
}

static void on_poll(uv_poll_t* handle, int status, int events) {
  transfer_t* t = handle->data;
  if (t->closing) return;
  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF and has stopped the watcher. sendfile usually returns the
     * real error (EPIPE, ECONNRESET); otherwise take the socket's pending error. */
    t->polling = false;
    if (pump(t) == PUMP_DONE) {
      finish(t, 0);
    } else {
      int error = socket_error(t->sock);
      finish(t, error != 0 ? error : -status);
    }
    return;
  }
  advance(t);
}

/* The environment is being torn down (a worker thread exits) while a transfer runs: stop it
 * without calling JS; on_close removes this hook, which lets the teardown continue. */
static void on_env_cleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  transfer_t* t = arg;
  t->teardown = true;
  finish(t, ECANCELED);
}

static void on_handle_finalize(napi_env env, void* data, void* hint) {
  release((transfer_t*)data);
}

static napi_value throw_code(napi_env env, const char* code, const char* message) {
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value throw_errno(napi_env env, int error, const char* what) {
  char message[160];
  snprintf(message, sizeof message, "sendfile: %s: %s", what, uv_strerror(-error));
  return throw_code(env, uv_err_name(-error), message);
}

/* A non-negative integer number no larger than 2^53 - 1. */
static bool get_index(napi_env env, napi_value value, int64_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return false;
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return false;
  *out = (int64_t)d;
  return true;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 5) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "start(socketFd, fileFd, offset, length, callback)");
    return NULL;
  }
  int64_t sock_fd, file_fd, offset, length;
  napi_valuetype type;
  if (!get_index(env, argv[0], &sock_fd) || sock_fd > INT32_MAX || !get_index(env, argv[1], &file_fd) ||
      file_fd > INT32_MAX || !get_index(env, argv[2], &offset) || !get_index(env, argv[3], &length) ||
      napi_typeof(env, argv[4], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "start: fds, offset and length must be non-negative integers, callback a function");
    return NULL;
  }

  struct stat st;
  if (fstat((int)sock_fd, &st) != 0) return throw_errno(env, errno, "socket fd");
  if (!S_ISSOCK(st.st_mode)) return throw_code(env, "ENOTSOCK", "sendfile: socketFd is not a socket");
  if (fstat((int)file_fd, &st) != 0) return throw_errno(env, errno, "file fd");
  if (!S_ISREG(st.st_mode)) return throw_code(env, "EINVAL", "sendfile: fileFd is not a regular file");

  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_code(env, "EINVAL", "sendfile: no event loop");

  transfer_t* t = calloc(1, sizeof *t);
  if (t == NULL) return throw_errno(env, ENOMEM, "allocate");
  t->env = env;
  t->sock = t->file = -1;
  t->offset = (off_t)offset;
  t->remaining = length;
  t->owners = 1; /* the native operation */
  bool wrapped = false;
  const char* failed = NULL;
  int error = 0;

  t->sock = fcntl((int)sock_fd, F_DUPFD_CLOEXEC, 3);
  if (t->sock < 0) {
    error = errno;
    failed = "dup socket";
    goto fail;
  }
  t->file = fcntl((int)file_fd, F_DUPFD_CLOEXEC, 3);
  if (t->file < 0) {
    error = errno;
    failed = "dup file";
    goto fail;
  }

  napi_value resource, name, handle;
  if (napi_create_reference(env, argv[4], 1, &t->callback) != napi_ok ||
      napi_create_object(env, &resource) != napi_ok ||
      napi_create_reference(env, resource, 1, &t->resource) != napi_ok ||
      napi_create_string_utf8(env, "ocimirror.sendfile", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &t->async_context) != napi_ok ||
      napi_create_object(env, &handle) != napi_ok || napi_type_tag_object(env, handle, &kHandleTag) != napi_ok) {
    failed = "";
    goto fail;
  }
  if (napi_wrap(env, handle, t, on_handle_finalize, NULL, NULL) != napi_ok) {
    failed = "";
    goto fail;
  }
  t->owners++;
  wrapped = true;
  if (napi_add_async_cleanup_hook(env, on_env_cleanup, t, &t->cleanup) != napi_ok) {
    t->cleanup = NULL;
    failed = "";
    goto fail;
  }

  int rc = uv_poll_init(loop, &t->poll, t->sock);
  if (rc != 0) {
    error = -rc;
    failed = "poll init";
    goto fail;
  }
  t->poll.data = t;
  running++;
  /* From here every end goes through finish() -> on_close -> callback. Try once right away: the
   * socket is usually writable, and this saves an epoll round trip. */
  advance(t);
  return handle;

fail:
  close_fds(t);
  drop_js(t);
  t->closing = true; /* a later cancel(handle) is a no-op */
  if (wrapped) {
    release(t); /* the handle's finalizer frees it */
  } else {
    free(t);
  }
  if (error != 0) return throw_errno(env, error, failed);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) throw_code(env, "EINVAL", "sendfile: could not set up the transfer");
  return NULL;
}

static napi_value js_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  napi_valuetype type = napi_undefined;
  bool ours = false;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  if (type != napi_object || napi_check_object_type_tag(env, argv[0], &kHandleTag, &ours) != napi_ok || !ours) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "cancel: not a sendfile handle");
    return NULL;
  }
  void* data = NULL;
  if (napi_unwrap(env, argv[0], &data) != napi_ok || data == NULL) return NULL;
  finish((transfer_t*)data, ECANCELED); /* no-op once finished */
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cancel", NULL, js_cancel, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok ||
      !register_hash_write(env, exports))
    return NULL;
  return exports;
}
