# pfpcache.vcl -- Varnish in front of pfpcache-relay (or of the nginx of a cluster), kept fresh by the relay.
#
# Set the relay's "cdn_purge_url" to this Varnish (for instance "http://127.0.0.1:6081/") and leave
# "cdn_purge_method" at "BAN": when a pubkey's picture changes or is purged, the relay sends BAN with the pubkey
# in Surrogate-Key, and every answer Varnish holds with that Surrogate-Key (each size, format and the banner)
# is dropped. With "PURGE" and "{path}" in the URL, each path is purged on its own (its query variants stay).
vcl 4.1;

backend pfpcache {
    .host = "127.0.0.1";
    .port = "8080";
}

# Who may ban and purge: the relay's nodes.
acl pfpcache_purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "BAN" || req.method == "PURGE") {
        if (client.ip !~ pfpcache_purgers) {
            return (synth(403, "Forbidden"));
        }
        if (req.method == "PURGE") {
            return (purge);
        }
        if (!req.http.Surrogate-Key) {
            return (synth(400, "BAN needs a Surrogate-Key"));
        }
        ban("obj.http.Surrogate-Key == " + req.http.Surrogate-Key);
        return (synth(200, "Banned"));
    }
    # The relay's WebSocket is not for a cache.
    if (req.http.Upgrade ~ "(?i)websocket") {
        return (pipe);
    }
}

sub vcl_pipe {
    if (req.http.Upgrade) {
        set bereq.http.Upgrade = req.http.Upgrade;
        set bereq.http.Connection = req.http.Connection;
    }
}
