/*
 * A small Node-API addon over the system libopus (Debian: libopus-dev), built by
 * scripts/build-native.mjs when the headers are present. It exists for what no JS binding offers:
 * decoding in-band FEC (opus_decode with decode_fec = 1) and concealing exactly one frame of a
 * chosen size. Every call reads and writes caller-owned typed arrays, so it allocates nothing per
 * frame. Handles are externals; destroy() frees at once, the finalizer frees what was forgotten.
 */
#include <node_api.h>
#include <opus.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  OpusEncoder *enc;
  OpusDecoder *dec;
  int frame;
} Codec;

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      napi_throw_error(env, "ERR_OPUS_ADDON", "invalid arguments to voice_opus");   \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static void free_codec(Codec *c) {
  if (c->enc) opus_encoder_destroy(c->enc);
  if (c->dec) opus_decoder_destroy(c->dec);
  c->enc = NULL;
  c->dec = NULL;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free_codec((Codec *)data);
  free(data);
}

static napi_value throw_opus(napi_env env, int err) {
  char code[32];
  snprintf(code, sizeof code, "OPUS_%d", err);
  napi_throw_error(env, code, opus_strerror(err));
  return NULL;
}

static Codec *get_codec(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) return NULL;
  return (Codec *)data;
}

static napi_value wrap(napi_env env, Codec *c) {
  napi_value out;
  if (napi_create_external(env, c, finalize, NULL, &out) != napi_ok) {
    free_codec(c);
    free(c);
    napi_throw_error(env, "ERR_OPUS_ADDON", "cannot create handle");
    return NULL;
  }
  return out;
}

/* createEncoder(frameSamples) */
static napi_value create_encoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t frame;
  int err;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &frame));
  Codec *c = calloc(1, sizeof(Codec));
  if (!c) return throw_opus(env, OPUS_ALLOC_FAIL);
  c->frame = frame;
  c->enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  if (err != OPUS_OK) {
    free(c);
    return throw_opus(env, err);
  }
  return wrap(env, c);
}

/* createDecoder(frameSamples) */
static napi_value create_decoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t frame;
  int err;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &frame));
  Codec *c = calloc(1, sizeof(Codec));
  if (!c) return throw_opus(env, OPUS_ALLOC_FAIL);
  c->frame = frame;
  c->dec = opus_decoder_create(48000, 1, &err);
  if (err != OPUS_OK) {
    free(c);
    return throw_opus(env, err);
  }
  return wrap(env, c);
}

static int typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) != napi_ok) return 0;
  return type == want;
}

/* encode(handle, pcm: Int16Array, out: Uint8Array) -> bytes */
static napi_value encode(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  void *pcm, *out;
  size_t pcm_len, out_len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Codec *c = get_codec(env, argv[0]);
  if (!c || !c->enc) return throw_opus(env, OPUS_INVALID_STATE);
  if (!typed(env, argv[1], napi_int16_array, &pcm, &pcm_len) ||
      !typed(env, argv[2], napi_uint8_array, &out, &out_len) || pcm_len < (size_t)c->frame)
    return throw_opus(env, OPUS_BAD_ARG);
  int n = opus_encode(c->enc, (const opus_int16 *)pcm, c->frame, (unsigned char *)out, (opus_int32)out_len);
  if (n < 0) return throw_opus(env, n);
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

/*
 * decode(handle, packet: Uint8Array | null, length, out: Int16Array, fec: boolean) -> samples.
 * A null packet (or length 0) conceals exactly one frame; fec decodes the frame before `packet`
 * from its in-band FEC data (a frame of concealment when it carries none).
 */
static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  void *pkt = NULL, *out;
  size_t pkt_len = 0, out_len;
  int32_t length;
  bool fec;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Codec *c = get_codec(env, argv[0]);
  if (!c || !c->dec) return throw_opus(env, OPUS_INVALID_STATE);
  CHECK(napi_get_value_int32(env, argv[2], &length));
  CHECK(napi_get_value_bool(env, argv[4], &fec));
  if (!typed(env, argv[3], napi_int16_array, &out, &out_len)) return throw_opus(env, OPUS_BAD_ARG);
  if (length > 0) {
    if (!typed(env, argv[1], napi_uint8_array, &pkt, &pkt_len) || (size_t)length > pkt_len)
      return throw_opus(env, OPUS_BAD_ARG);
  } else {
    pkt = NULL;
    length = 0;
  }
  /* Concealment and FEC produce exactly one frame of the stream's size; a packet decodes whole. */
  int max = (pkt == NULL || fec) ? c->frame : (int)out_len;
  if ((size_t)max > out_len) return throw_opus(env, OPUS_BUFFER_TOO_SMALL);
  int n = opus_decode(c->dec, (const unsigned char *)pkt, length, (opus_int16 *)out, max, fec ? 1 : 0);
  if (n < 0) return throw_opus(env, n);
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

/* encoderCtl(handle, request, value) for the SET requests that take one int; GET_BITRATE returns it. */
static napi_value encoder_ctl(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  int32_t request, value;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Codec *c = get_codec(env, argv[0]);
  if (!c || !c->enc) return throw_opus(env, OPUS_INVALID_STATE);
  CHECK(napi_get_value_int32(env, argv[1], &request));
  CHECK(napi_get_value_int32(env, argv[2], &value));
  int err;
  opus_int32 got = value;
  switch (request) {
    case OPUS_GET_BITRATE_REQUEST:
      err = opus_encoder_ctl(c->enc, OPUS_GET_BITRATE(&got));
      break;
    case OPUS_SET_BITRATE_REQUEST:
    case OPUS_SET_COMPLEXITY_REQUEST:
    case OPUS_SET_INBAND_FEC_REQUEST:
    case OPUS_SET_PACKET_LOSS_PERC_REQUEST:
    case OPUS_SET_DTX_REQUEST:
    case OPUS_SET_SIGNAL_REQUEST:
      err = opus_encoder_ctl(c->enc, request, (opus_int32)value);
      break;
    default:
      return throw_opus(env, OPUS_UNIMPLEMENTED);
  }
  if (err != OPUS_OK) return throw_opus(env, err);
  CHECK(napi_create_int32(env, got, &result));
  return result;
}

/* decoderReset(handle) */
static napi_value decoder_reset(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Codec *c = get_codec(env, argv[0]);
  if (!c || !c->dec) return throw_opus(env, OPUS_INVALID_STATE);
  opus_decoder_ctl(c->dec, OPUS_RESET_STATE);
  return NULL;
}

/* destroy(handle): idempotent */
static napi_value destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Codec *c = get_codec(env, argv[0]);
  if (c) free_codec(c);
  return NULL;
}

static napi_value version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_string_utf8(env, opus_get_version_string(), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createEncoder", NULL, create_encoder, NULL, NULL, NULL, napi_default, NULL},
      {"createDecoder", NULL, create_decoder, NULL, NULL, NULL, napi_default, NULL},
      {"encode", NULL, encode, NULL, NULL, NULL, napi_default, NULL},
      {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
      {"encoderCtl", NULL, encoder_ctl, NULL, NULL, NULL, napi_default, NULL},
      {"decoderReset", NULL, decoder_reset, NULL, NULL, NULL, napi_default, NULL},
      {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
      {"version", NULL, version, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
