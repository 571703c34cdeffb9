/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Authentication of the data path: the endpoint's shared secret (options,
 * MRLEASE_SECRET_FILE, MRLEASE_SECRET), the bootstrap's proofs and
 * per-connection keys, and the tag every control message carries.
 * HMAC-SHA256 is OpenSSL's libcrypto (one call per message, constant-time
 * comparison); randomness is getrandom(). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ep_int.h"

static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
	hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int mrl_auth_random(void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = getrandom((char *)buf + done, len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return mrl_err(errno, "getrandom: %s", strerror(errno));
		}
		done += (size_t)n;
	}
	return 0;
}

int mrl_auth_hmac(const void *key, size_t keylen, const struct mrl_iov *iov, int n,
		  unsigned char out[MRL_HMAC_LEN])
{
	pthread_once(&hmac_once, hmac_fetch);
	if (!hmac_alg)
		return mrl_err(ENOSYS, "libcrypto has no HMAC");
	/* an empty key (an insecure endpoint) is still a key to HMAC */
	static const unsigned char zero;
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(hmac_alg);
	OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
			    OSSL_PARAM_construct_end()};
	size_t outl = 0;
	int ok = c && EVP_MAC_init(c, keylen ? key : &zero, keylen, prm);
	for (int i = 0; ok && i < n; i++)
		ok = EVP_MAC_update(c, iov[i].p, iov[i].len);
	ok = ok && EVP_MAC_final(c, out, &outl, MRL_HMAC_LEN) && outl == MRL_HMAC_LEN;
	EVP_MAC_CTX_free(c);
	return ok ? 0 : mrl_err(EIO, "HMAC-SHA256 failed");
}

bool mrl_auth_eq(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/* A secret file: a regular file only its owner may read or write, its
 * bytes the secret (a trailing newline is not part of it). */
static int secret_file(const char *path, unsigned char *out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return mrl_err(errno, "secret file %s: %s", path, strerror(errno));
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) < 0)
		ret = mrl_err(errno, "secret file %s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		ret = mrl_err(EINVAL, "secret file %s is not a regular file", path);
	else if (st.st_mode & 077)
		ret = mrl_err(EACCES, "secret file %s has mode %04o: others may read it (chmod 600)",
			      path, (unsigned)(st.st_mode & 07777));
	else if (st.st_size > MRL_SECRET_MAX + 1)
		ret = mrl_err(EINVAL, "secret file %s: over %d bytes", path, MRL_SECRET_MAX);
	ssize_t n = ret ? 0 : read(fd, out, MRL_SECRET_MAX + 1);
	close(fd);
	if (ret)
		return ret;
	if (n < 0)
		return mrl_err(errno, "secret file %s: %s", path, strerror(errno));
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	if (n > MRL_SECRET_MAX)
		return mrl_err(EINVAL, "secret file %s: over %d bytes", path, MRL_SECRET_MAX);
	*len = (size_t)n;
	return 0;
}

int mrl_auth_secret(const void *secret, size_t secret_len, bool insecure_ok, unsigned char *out,
		    size_t *len)
{
	const char *file = getenv("MRLEASE_SECRET_FILE"), *env = getenv("MRLEASE_SECRET");
	int ret = 0;
	*len = 0;
	if (secret) {
		if (secret_len > MRL_SECRET_MAX)
			return mrl_err(EINVAL, "mrl_ep_create: secret of %zu bytes, at most %d", secret_len,
				       MRL_SECRET_MAX);
		memcpy(out, secret, secret_len);
		*len = secret_len;
	} else if (file && *file) {
		ret = secret_file(file, out, len);
	} else if (env && *env) {
		size_t n = strlen(env);
		if (n > MRL_SECRET_MAX)
			return mrl_err(EINVAL, "MRLEASE_SECRET: over %d bytes", MRL_SECRET_MAX);
		memcpy(out, env, n);
		*len = n;
	} else if (insecure_ok) {
		return 0;
	} else {
		return mrl_err(EACCES, "mrl_ep_create: no secret (mrl_ep_opts.secret, MRLEASE_SECRET_FILE "
				       "or MRLEASE_SECRET); MRL_EP_INSECURE lets anyone who reaches the "
				       "endpoint use its MRs");
	}
	if (!ret && *len < MRL_SECRET_MIN) {
		explicit_bzero(out, *len);
		ret = mrl_err(EINVAL, "secret of %zu bytes: at least %d", *len, MRL_SECRET_MIN);
	}
	return ret;
}

/* What both sides' proofs and keys are bound to: both nonces and both
 * fabric addresses, each address with its length. */
static int derive(const unsigned char *secret, size_t slen, const char *label,
		  const struct mrl_boot_transcript *t, unsigned char out[MRL_HMAC_LEN])
{
	uint32_t lc = t->namelen_c, lo = t->namelen_o;
	struct mrl_iov iov[] = {
		{label, strlen(label) + 1}, {t->nonce_c, MRL_NONCE_LEN}, {t->nonce_o, MRL_NONCE_LEN},
		{&lc, sizeof(lc)},          {t->name_c, lc},            {&lo, sizeof(lo)},
		{t->name_o, lo},
	};
	return mrl_auth_hmac(secret, slen, iov, (int)ARRAY_SIZE(iov), out);
}

int mrl_auth_proof(const unsigned char *secret, size_t slen, bool owner,
		   const struct mrl_boot_transcript *t, unsigned char out[MRL_HMAC_LEN])
{
	return derive(secret, slen, owner ? "mrlease proof owner" : "mrlease proof peer", t, out);
}

/* A context keyed once per connection and direction: each message then
 * costs a re-init, not a fetch and a key schedule (~1 us against ~10). */
static EVP_MAC_CTX *keyed(const unsigned char key[MRL_HMAC_LEN])
{
	OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
			    OSSL_PARAM_construct_end()};
	pthread_once(&hmac_once, hmac_fetch);
	EVP_MAC_CTX *c = hmac_alg ? EVP_MAC_CTX_new(hmac_alg) : NULL;
	if (c && !EVP_MAC_init(c, key, MRL_HMAC_LEN, prm)) {
		EVP_MAC_CTX_free(c);
		c = NULL;
	}
	return c;
}

void mrl_auth_peer_free(struct mrl_peer *p)
{
	EVP_MAC_CTX_free(p->mac_tx);
	EVP_MAC_CTX_free(p->mac_rx);
	p->mac_tx = p->mac_rx = NULL;
}

int mrl_auth_keys(const unsigned char *secret, size_t slen, bool owner,
		  const struct mrl_boot_transcript *t, struct mrl_peer *p)
{
	unsigned char tx[MRL_HMAC_LEN], rx[MRL_HMAC_LEN];
	int ret = derive(secret, slen, owner ? "mrlease key o2c" : "mrlease key c2o", t, tx);
	if (!ret)
		ret = derive(secret, slen, owner ? "mrlease key c2o" : "mrlease key o2c", t, rx);
	mrl_auth_peer_free(p);
	if (!ret) {
		p->mac_tx = keyed(tx);
		p->mac_rx = keyed(rx);
		if (!p->mac_tx || !p->mac_rx) {
			mrl_auth_peer_free(p);
			ret = mrl_err(ENOMEM, "HMAC context");
		}
	}
	explicit_bzero(tx, sizeof(tx));
	explicit_bzero(rx, sizeof(rx));
	p->tx_seq = 0;
	p->rx_top = 0;
	p->rx_win = 0;
	return ret;
}

/* The tag of a message whose header's tag field is zero. */
static int tag_of(EVP_MAC_CTX *c, const void *msg, size_t len, unsigned char tag[MRL_TAG_LEN])
{
	unsigned char full[MRL_HMAC_LEN];
	size_t outl = 0;
	if (!c || !EVP_MAC_init(c, NULL, 0, NULL) || !EVP_MAC_update(c, msg, len) ||
	    !EVP_MAC_final(c, full, &outl, sizeof(full)))
		return -EIO;
	memcpy(tag, full, MRL_TAG_LEN);
	return 0;
}

int mrl_auth_seal(struct mrl_peer *p, void *msg, size_t len)
{
	struct msg_hdr *h = msg;
	h->seq = ++p->tx_seq;
	memset(h->tag, 0, sizeof(h->tag));
	return tag_of(p->mac_tx, msg, len, h->tag);
}

int mrl_auth_open(struct mrl_peer *p, const void *msg, size_t len)
{
	unsigned char copy[MRL_MSG_MAX], tag[MRL_TAG_LEN];
	if (len < sizeof(struct msg_hdr) || len > sizeof(copy))
		return -EBADMSG;
	memcpy(copy, msg, len);
	struct msg_hdr *h = (struct msg_hdr *)copy;
	memset(h->tag, 0, sizeof(h->tag));
	if (tag_of(p->mac_rx, copy, len, tag) ||
	    !mrl_auth_eq(tag, ((const struct msg_hdr *)msg)->tag, MRL_TAG_LEN))
		return -EBADMSG;
	/* a window of the last 64 numbers: messages may overtake each other
	 * a little, never come twice */
	uint64_t seq = h->seq;
	if (seq == 0)
		return -EBADMSG;
	if (seq > p->rx_top) {
		uint64_t shift = seq - p->rx_top;
		p->rx_win = shift >= 64 ? 0 : p->rx_win << shift;
		p->rx_win |= 1;
		p->rx_top = seq;
		return 0;
	}
	uint64_t back = p->rx_top - seq;
	if (back >= 64 || (p->rx_win & (1ull << back)))
		return -EALREADY;
	p->rx_win |= 1ull << back;
	return 0;
}
