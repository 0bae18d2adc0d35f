/*
 * Batched UDP send for the voice server: sendmmsg(2) on the descriptor of the server's own dgram
 * socket (Linux), built by scripts/build-native.mjs. node:dgram allocates per datagram (a sliced
 * Buffer, a list, a callback, a SendWrap: ~670 young bytes) and makes one syscall per datagram;
 * here a whole turn's packets leave in one or a few syscalls and nothing is allocated: JS hands
 * over one batch buffer (packets back to back) and one Int32Array of (offset, length, IPv4 address
 * as a host-order u32, port) per packet, and reads the outcome from a preallocated Int32Array.
 * The socket is libuv's (non-blocking); sendmmsg is synchronous, so the batch buffer may be reused
 * as soon as this returns. Errors are counted per reason, never thrown: a full socket buffer or a
 * refused destination costs that packet, not the tick.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

/* Datagrams per sendmmsg call (the kernel caps a call at UIO_MAXIOV = 1024); larger batches loop. */
#define VLEN 128
/* Int32 fields per packet in the metadata array. */
#define META_FIELDS 4

/* Slots of the result array (keep in step with media/src/udp-native.ts). */
enum {
  R_SENT = 0,     /* datagrams the kernel accepted */
  R_AGAIN,        /* EAGAIN / EWOULDBLOCK: socket send buffer full (the rest of the batch dropped) */
  R_NOBUFS,       /* ENOBUFS: an output queue full (the rest of the batch dropped) */
  R_PERM,         /* EPERM / EACCES: refused by a firewall rule, or a broadcast address */
  R_TOO_LONG,     /* EMSGSIZE */
  R_BAD_ADDRESS,  /* EINVAL, EDESTADDRREQ, EADDRNOTAVAIL, ENETUNREACH, EHOSTUNREACH, EAFNOSUPPORT */
  R_OTHER,        /* any other errno */
  R_CLOSED,       /* EBADF / ENOTSOCK: fd is no longer the socket (closed under us; the rest dropped) */
  R_LAST_ERRNO,   /* the last errno seen (0 if none), for a log line */
  R_SLOTS
};

#define THROW(msg)                                           \
  do {                                                       \
    napi_throw_type_error(env, "ERR_UDP_ADDON", msg);        \
    return NULL;                                             \
  } while (0)

/* 1 when v is a typed array of type `want` (an empty one may have no data pointer). */
static int typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  return napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) == napi_ok && type == want;
}

#ifdef __linux__
static int reason_of(int err) {
  switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return R_AGAIN;
    case ENOBUFS:
      return R_NOBUFS;
    case EPERM:
    case EACCES:
      return R_PERM;
    case EMSGSIZE:
      return R_TOO_LONG;
    case EINVAL:
    case EDESTADDRREQ:
    case EADDRNOTAVAIL:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case EAFNOSUPPORT:
      return R_BAD_ADDRESS;
    case EBADF:
    case ENOTSOCK:
      return R_CLOSED;
    default:
      return R_OTHER;
  }
}
#endif

/*
 * send(fd, batch: Uint8Array, meta: Int32Array, count, result: Int32Array(9)) -> datagrams sent.
 * meta[4i..4i+3] = offset in batch, length, IPv4 address (host order, as int32), port.
 * result is overwritten with this call's outcome (see the enum above).
 */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) THROW("send(fd, batch, meta, count, result)");
  int32_t fd = -1, count = -1;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) THROW("fd must be a descriptor");
  size_t blen = 0, mlen = 0, rlen = 0;
  void *batch_data = NULL, *meta_data = NULL, *result_data = NULL;
  if (!typed(env, argv[1], napi_uint8_array, &batch_data, &blen) ||
      !typed(env, argv[2], napi_int32_array, &meta_data, &mlen))
    THROW("batch must be a Uint8Array and meta an Int32Array");
  uint8_t *batch = batch_data;
  int32_t *meta = meta_data;
  if (napi_get_value_int32(env, argv[3], &count) != napi_ok || count < 0 || (size_t)count * META_FIELDS > mlen)
    THROW("count out of range of meta");
  if (!typed(env, argv[4], napi_int32_array, &result_data, &rlen) || rlen < R_SLOTS)
    THROW("result must be an Int32Array of 9");
  int32_t *result = result_data;
  /* Every packet lies inside the batch and has a port: checked before anything is sent. */
  for (int32_t i = 0; i < count; i++) {
    int64_t off = meta[i * META_FIELDS], len = meta[i * META_FIELDS + 1], port = meta[i * META_FIELDS + 3];
    if (off < 0 || len < 0 || off + len > (int64_t)blen) THROW("a packet lies outside the batch");
    if (port < 0 || port > 65535) THROW("port out of range");
  }
  memset(result, 0, R_SLOTS * sizeof *result);
#ifdef __linux__
  struct mmsghdr msgs[VLEN];
  struct iovec iov[VLEN];
  struct sockaddr_in to[VLEN];
  int32_t done = 0;
  while (done < count) {
    int n = count - done < VLEN ? count - done : VLEN;
    memset(msgs, 0, (size_t)n * sizeof msgs[0]);
    for (int k = 0; k < n; k++) {
      const int32_t *m = meta + (size_t)(done + k) * META_FIELDS;
      iov[k].iov_base = batch + m[0];
      iov[k].iov_len = (size_t)m[1];
      memset(&to[k], 0, sizeof to[k]);
      to[k].sin_family = AF_INET;
      to[k].sin_addr.s_addr = htonl((uint32_t)m[2]);
      to[k].sin_port = htons((uint16_t)m[3]);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = &to[k];
      msgs[k].msg_hdr.msg_namelen = sizeof to[k];
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
    if (r > 0) {
      /* The first r went; if fewer than n, the next one failed: the loop retries it and learns why. */
      result[R_SENT] += r;
      done += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    int err = r < 0 ? errno : EAGAIN;
    int reason = reason_of(err);
    result[R_LAST_ERRNO] = err;
    if (reason == R_AGAIN || reason == R_NOBUFS || reason == R_CLOSED) {
      /* The socket or the device queue is full, or the socket is gone: the rest would fail too.
       * Drop them now (voice is real time: a late packet is worth nothing, and a queue here would
       * be unbounded), counted under the same reason. */
      result[reason] += count - done;
      done = count;
    } else {
      /* Only this datagram is at fault (its address or length): skip it, send the rest. */
      result[reason]++;
      done++;
    }
  }
  napi_value out;
  if (napi_create_int32(env, result[R_SENT], &out) != napi_ok) return NULL;
  return out;
#else
  (void)fd;
  (void)batch;
  THROW("sendmmsg is Linux only");
#endif
}

/* available() -> true where sendmmsg exists (Linux). */
static napi_value available(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __linux__
  napi_get_boolean(env, 1, &out);
#else
  napi_get_boolean(env, 0, &out);
#endif
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"send", NULL, send_batch, NULL, NULL, NULL, napi_default, NULL},
      {"available", NULL, available, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
