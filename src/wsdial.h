/* wsdial.h -- opens a client WebSocket connection: DNS, TCP, TLS and the HTTP/1.1 upgrade, never blocking the loop. */
#ifndef PFP_WSDIAL_H
#define PFP_WSDIAL_H

#include <h2o.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "netguard.h"
#include "url.h"

struct wsdial;

/*
 * Called once, on the loop thread. On success `sock` is an open connection
 * whose upgrade to WebSocket has been accepted; the callee owns it (any bytes
 * after the server's handshake are left in sock->input, as frames). On failure
 * `sock` is NULL and `err` says why. The wsdial is freed after the call.
 */
typedef void (*wsdial_cb)(void *data, h2o_socket_t *sock, const char *err);

/*
 * Resolves `url`'s host, connects to its addresses in turn, does TLS for wss://
 * (certificate chain checked against `ssl_ctx`'s trust store, host name checked
 * against the certificate's DNS names, SNI sent), and sends the upgrade request.
 * With a `guard`, only addresses it lets through are connected to: when it
 * refuses them all, the error says why (the range that refused the last).
 * Gives up after `timeout_ms`. `url` and `ssl_ctx` must outlive the dial. Returns
 * the dial, which wsdial_cancel() can abandon before its callback.
 */
struct wsdial *wsdial_start(uv_loop_t *loop, const struct ws_url *url, SSL_CTX *ssl_ctx, const struct netguard *guard,
                            uint64_t timeout_ms, wsdial_cb cb, void *data);

/* Abandons a dial: its callback is not called. */
void wsdial_cancel(struct wsdial *d);

/*
 * Checks a server's answer to the upgrade: `buf` holds at least the status line
 * and headers up to the empty line. Returns the length of the head (0 when it is
 * not complete yet), or -EPROTO with `err` saying why (WSDIAL_ERR_LEN bytes
 * hold any reason) when the answer is not a valid 101 Switching Protocols whose
 * Sec-WebSocket-Accept matches `key`.
 */
#define WSDIAL_ERR_LEN 128
ssize_t wsdial_parse_response(const char *buf, size_t len, const char *key, char *err, size_t errlen);

#endif
