/* web.h -- the page: profile-pic-example.html, built into the binary, served at / and under its own name. */
#ifndef PFP_WEB_H
#define PFP_WEB_H

#include "http.h"

/* The page for GET / from a browser (a fallback of the relay's route), and GET /profile-pic-example.html. */
void web_page(void *data, h2o_req_t *req, h2o_iovec_t param);
int web_route(struct http_server *http);

#endif
