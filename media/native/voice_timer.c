/*
 * A precise one-shot timer on the main event loop (Linux), built by scripts/build-native.mjs: a
 * timerfd(2) on CLOCK_MONOTONIC watched by a uv_poll_t on Node's own libuv loop. It wakes the loop
 * at a microsecond deadline (setTimeout rounds to whole milliseconds) without a helper thread: the
 * metronome worker it replaces cost a futex wake on its thread, a postMessage (serialised, queued,
 * an async handle) and a MessageEvent dispatched on the main thread, 50 times a second per active
 * clock phase. Here a wake-up is the loop's epoll returning, one read(2) and one call into JS.
 *
 *   create(callback) -> handle     callback() is called (with no arguments) when an armed timer fires
 *   arm(handle, delayMs)           one shot, delayMs from now (re-arming replaces the deadline;
 *                                  <= 0 fires at the next loop turn)
 *   disarm(handle)                 a fire already pending in the loop is dropped too (read: EAGAIN)
 *   unref(handle, on)              on: the timer alone does not keep the process alive
 *   close(handle)                  idempotent; the callback is never called after it
 *
 * Nothing is allocated per fire. An exception thrown by the callback is handed to Node's
 * uncaught-exception path (the JS side catches its own: see media/src/clock.ts).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>
#endif

#define THROW(msg)                                            \
  do {                                                        \
    napi_throw_type_error(env, "ERR_TIMER_ADDON", msg);       \
    return NULL;                                              \
  } while (0)

#ifdef __linux__
typedef struct {
  uv_poll_t poll; /* first: the handle's address is the struct's */
  int fd;
  int closed;
  int hooked;
  /* The struct has two owners, freed after both let go: the JS handle (its finalizer) and the
   * uv handle (uv_close's callback). close() does not free it: the JS handle may still be used. */
  int finalized;
  int handle_closed;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
} vt_timer;

static void on_closed(uv_handle_t *h) {
  vt_timer *t = (vt_timer *)h;
  t->handle_closed = 1;
  if (t->finalized) free(t);
}

static void cleanup(void *arg);

/* Stops watching, releases the callback and the descriptor (idempotent). */
static void shut(vt_timer *t) {
  if (t->closed) return;
  t->closed = 1;
  if (t->hooked) napi_remove_env_cleanup_hook(t->env, cleanup, t);
  t->hooked = 0;
  uv_poll_stop(&t->poll);
  if (t->callback) napi_delete_reference(t->env, t->callback);
  if (t->async) napi_async_destroy(t->env, t->async);
  t->callback = NULL;
  t->async = NULL;
  close(t->fd);
  t->fd = -1;
  uv_close((uv_handle_t *)&t->poll, on_closed);
}

/* The environment is going away (process or worker exit). */
static void cleanup(void *arg) {
  vt_timer *t = arg;
  t->hooked = 0;
  shut(t);
}

/* The JS handle was collected (closed or not): the struct goes once the uv handle is closed too. */
static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  vt_timer *t = data;
  t->finalized = 1;
  if (!t->closed) shut(t);
  else if (t->handle_closed) free(t);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  vt_timer *t = (vt_timer *)p;
  if (t->closed) return;
  uint64_t expirations = 0;
  /* EAGAIN: disarmed or re-armed after it fired and before this turn; nothing is due. */
  if (status < 0 || read(t->fd, &expirations, sizeof expirations) != (ssize_t)sizeof expirations) return;
  napi_env env = t->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, result;
  if (napi_get_reference_value(env, t->callback, &cb) == napi_ok && cb != NULL &&
      napi_get_global(env, &recv) == napi_ok) {
    /* make_callback, not call_function: microtasks and nextTicks run after it, as after any I/O
     * (its receiver must be an object: the global). */
    napi_make_callback(env, t->async, recv, cb, 0, NULL, &result);
    /* Whatever the status, no exception may stay pending into the loop's next callback. */
    bool pending = false;
    napi_value err;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
        napi_get_and_clear_last_exception(env, &err) == napi_ok)
      napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static vt_timer *unwrap(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return (vt_timer *)data;
}

/* Arms for `ms` from now (0, negative or NaN: disarm). */
static int set(vt_timer *t, double ms) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (ms > 0) {
    /* (Capped at a day: a huge or infinite ms must not overflow.) */
    int64_t ns = ms > 86400e3 ? (int64_t)86400e9 : (int64_t)(ms * 1e6);
    if (ns < 1) ns = 1;
    its.it_value.tv_sec = (time_t)(ns / 1000000000);
    its.it_value.tv_nsec = (long)(ns % 1000000000);
  }
  return timerfd_settime(t->fd, 0, &its, NULL);
}
#endif

#ifdef __linux__
/* The timer in argv[0] of a call taking `n` arguments (the rest into argv[1..]); NULL after throwing. */
static vt_timer *args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage) {
  size_t argc = n;
  vt_timer *t = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n || !(t = unwrap(env, argv[0])))
    napi_throw_type_error(env, "ERR_TIMER_ADDON", usage);
  return t;
}

static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, name;
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function)
    THROW("create(callback): callback must be a function");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) THROW("no event loop");
  vt_timer *t = calloc(1, sizeof *t);
  if (!t) THROW("out of memory");
  t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (t->fd < 0) {
    free(t);
    THROW("timerfd_create failed");
  }
  t->env = env;
  if (uv_poll_init(loop, &t->poll, t->fd) != 0) {
    close(t->fd);
    free(t);
    THROW("uv_poll_init failed");
  }
  if (napi_create_reference(env, argv[0], 1, &t->callback) != napi_ok ||
      napi_create_string_utf8(env, "voice.timer", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &t->async) != napi_ok ||
      napi_add_env_cleanup_hook(env, cleanup, t) != napi_ok || (t->hooked = 1, 0) ||
      napi_create_external(env, t, finalize, NULL, &out) != napi_ok) {
    t->finalized = 1; /* no JS handle: the uv handle's close frees it */
    shut(t);
    THROW("could not create the timer");
  }
  /* On failure the external's finalizer shuts it. */
  if (uv_poll_start(&t->poll, UV_READABLE, on_readable) != 0) THROW("uv_poll_start failed");
  return out;
}

/* A closed handle is inert: arm, disarm and unref do nothing. */
static napi_value arm(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double ms;
  vt_timer *t = args(env, info, 2, argv, "arm(handle, ms)");
  if (!t) return NULL;
  if (napi_get_value_double(env, argv[1], &ms) != napi_ok) THROW("arm(handle, ms): ms must be a number");
  /* <= 0: fire at the next loop turn (a zero it_value would disarm). */
  if (!t->closed && set(t, ms > 0 ? ms : 1e-6) != 0) THROW("timerfd_settime failed");
  return NULL;
}

static napi_value disarm(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  vt_timer *t = args(env, info, 1, argv, "disarm(handle)");
  if (t && !t->closed) set(t, 0);
  return NULL;
}

static napi_value unref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool on = true;
  vt_timer *t = args(env, info, 2, argv, "unref(handle, on)");
  if (!t) return NULL;
  if (napi_get_value_bool(env, argv[1], &on) != napi_ok) THROW("unref(handle, on): on must be a boolean");
  if (t->closed) return NULL;
  if (on) uv_unref((uv_handle_t *)&t->poll);
  else uv_ref((uv_handle_t *)&t->poll);
  return NULL;
}

static napi_value close_timer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  vt_timer *t = args(env, info, 1, argv, "close(handle)");
  if (t) shut(t);
  return NULL;
}
#else
/* Elsewhere every function throws (loadNativeTimer does not even load it off Linux). */
static napi_value linux_only(napi_env env, napi_callback_info info) {
  (void)info;
  THROW("timerfd is Linux only");
}
#define create linux_only
#define arm linux_only
#define disarm linux_only
#define unref linux_only
#define close_timer linux_only
#endif

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
      {"arm", NULL, arm, NULL, NULL, NULL, napi_default, NULL},
      {"disarm", NULL, disarm, NULL, NULL, NULL, napi_default, NULL},
      {"unref", NULL, unref, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_timer, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
