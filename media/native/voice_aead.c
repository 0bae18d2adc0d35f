/*
 * AES-256-GCM for voice packets over OpenSSL's EVP (Debian: libssl-dev), built by
 * scripts/build-native.mjs when the headers are present. node:crypto makes a new cipher object
 * (and its output buffers) per packet; here each key owns two EVP contexts, keyed once, and every
 * packet only sets its nonce, so sealing and opening allocate nothing. The byte layout is the one
 * protocol/src/voice-crypto.ts defines: AAD = the 16 header bytes at the start of the packet,
 * ciphertext after them, the 16-byte tag after the ciphertext. Handles are externals; destroy()
 * frees at once and is idempotent, the finalizer frees what was forgotten.
 */
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define HEADER_BYTES 16
#define TAG_BYTES 16

typedef struct {
  EVP_CIPHER_CTX *enc;
  EVP_CIPHER_CTX *dec;
} Aead;

#define CHECK(call)                                                               \
  do {                                                                            \
    if ((call) != napi_ok) {                                                      \
      napi_throw_type_error(env, "ERR_AEAD_ADDON", "invalid arguments to voice_aead"); \
      return NULL;                                                                \
    }                                                                             \
  } while (0)

static void free_aead(Aead *a) {
  if (a->enc) EVP_CIPHER_CTX_free(a->enc);
  if (a->dec) EVP_CIPHER_CTX_free(a->dec);
  a->enc = NULL;
  a->dec = NULL;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free_aead((Aead *)data);
  free(data);
}

/* Bytes of a Uint8Array argument, or NULL (a TypeError is then pending). */
static uint8_t *bytes(napi_env env, napi_value v, size_t *length) {
  napi_typedarray_type type;
  void *data = NULL;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, &data, &ab, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_AEAD_ADDON", "expected a Uint8Array");
    return NULL;
  }
  return (uint8_t *)data;
}

static Aead *get_aead(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_AEAD_ADDON", "not an AEAD handle");
    return NULL;
  }
  Aead *a = (Aead *)data;
  if (!a->enc || !a->dec) {
    napi_throw_error(env, "ERR_AEAD_DESTROYED", "AEAD handle used after destroy()");
    return NULL;
  }
  return a;
}

/* create(key: Uint8Array(32)) -> handle */
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t klen = 0;
  uint8_t *key = argc >= 1 ? bytes(env, argv[0], &klen) : NULL;
  if (!key) return NULL;
  if (klen != KEY_BYTES) {
    napi_throw_type_error(env, "ERR_AEAD_ADDON", "key must be 32 bytes");
    return NULL;
  }
  Aead *a = calloc(1, sizeof *a);
  if (!a) {
    napi_throw_error(env, "ERR_AEAD_ADDON", "out of memory");
    return NULL;
  }
  a->enc = EVP_CIPHER_CTX_new();
  a->dec = EVP_CIPHER_CTX_new();
  /* The key schedule is computed once here; per packet only the nonce is set. */
  if (!a->enc || !a->dec || EVP_EncryptInit_ex(a->enc, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
      EVP_DecryptInit_ex(a->dec, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
    free_aead(a);
    free(a);
    napi_throw_error(env, "ERR_AEAD_ADDON", "EVP_aes_256_gcm initialisation failed");
    return NULL;
  }
  napi_value out;
  if (napi_create_external(env, a, finalize, NULL, &out) != napi_ok) {
    free_aead(a);
    free(a);
    napi_throw_error(env, "ERR_AEAD_ADDON", "cannot create handle");
    return NULL;
  }
  return out;
}

/*
 * seal(handle, nonce: Uint8Array(12), packet: Uint8Array, n): encrypts packet[16, 16+n) in place,
 * authenticating packet[0, 16), and writes the tag to packet[16+n, 32+n). Returns 32 + n.
 */
static napi_value seal(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) CHECK(napi_invalid_arg);
  Aead *a = get_aead(env, argv[0]);
  if (!a) return NULL;
  size_t nlen = 0, plen = 0;
  uint8_t *nonce = bytes(env, argv[1], &nlen);
  if (!nonce) return NULL;
  uint8_t *p = bytes(env, argv[2], &plen);
  if (!p) return NULL;
  int32_t n = -1;
  CHECK(napi_get_value_int32(env, argv[3], &n));
  if (nlen != NONCE_BYTES || n < 0 || (size_t)n + HEADER_BYTES + TAG_BYTES > plen) {
    napi_throw_type_error(env, "ERR_AEAD_ADDON", "bad nonce or payload length");
    return NULL;
  }
  int len = 0;
  EVP_CIPHER_CTX *c = a->enc;
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate(c, NULL, &len, p, HEADER_BYTES) != 1 ||
      EVP_EncryptUpdate(c, p + HEADER_BYTES, &len, p + HEADER_BYTES, n) != 1 ||
      EVP_EncryptFinal_ex(c, p + HEADER_BYTES + n, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, p + HEADER_BYTES + n) != 1) {
    napi_throw_error(env, "ERR_AEAD_ADDON", "AES-256-GCM seal failed");
    return NULL;
  }
  napi_value out;
  CHECK(napi_create_int32(env, n + HEADER_BYTES + TAG_BYTES, &out));
  return out;
}

/*
 * open(handle, nonce: Uint8Array(12), packet: Uint8Array, length, out: Uint8Array): authenticates
 * packet[0, length) (header, ciphertext, tag) and decrypts the ciphertext into out. Returns the
 * payload length, or -1 when authentication fails (out then holds unspecified bytes).
 */
static napi_value open_packet(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) CHECK(napi_invalid_arg);
  Aead *a = get_aead(env, argv[0]);
  if (!a) return NULL;
  size_t nlen = 0, plen = 0, olen = 0;
  uint8_t *nonce = bytes(env, argv[1], &nlen);
  if (!nonce) return NULL;
  uint8_t *p = bytes(env, argv[2], &plen);
  if (!p) return NULL;
  int32_t length = -1;
  CHECK(napi_get_value_int32(env, argv[3], &length));
  uint8_t *o = bytes(env, argv[4], &olen);
  if (!o) return NULL;
  int32_t n = length - HEADER_BYTES - TAG_BYTES;
  if (nlen != NONCE_BYTES || n < 0 || (size_t)length > plen || (size_t)n > olen) {
    napi_throw_type_error(env, "ERR_AEAD_ADDON", "bad nonce or packet length");
    return NULL;
  }
  int len = 0;
  int ok = 0;
  EVP_CIPHER_CTX *c = a->dec;
  if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) == 1 &&
      EVP_DecryptUpdate(c, NULL, &len, p, HEADER_BYTES) == 1 &&
      EVP_DecryptUpdate(c, o, &len, p + HEADER_BYTES, n) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, p + HEADER_BYTES + n) == 1 &&
      EVP_DecryptFinal_ex(c, o + n, &len) == 1)
    ok = 1;
  napi_value out;
  CHECK(napi_create_int32(env, ok ? n : -1, &out));
  return out;
}

/* destroy(handle): idempotent */
static napi_value destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  if (argc >= 1 && napi_get_value_external(env, argv[0], &data) == napi_ok && data) free_aead((Aead *)data);
  return NULL;
}

static napi_value version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
      {"seal", NULL, seal, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, open_packet, NULL, NULL, NULL, napi_default, NULL},
      {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
      {"version", NULL, version, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
