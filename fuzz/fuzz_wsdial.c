/* fuzz_wsdial.c -- libFuzzer driver for the check of a server's answer to the WebSocket upgrade. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "wsdial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[WSDIAL_ERR_LEN] = "";
    ssize_t n = wsdial_parse_response((const char *)data, size, "dGhlIHNhbXBsZSBub25jZQ==", err, sizeof(err));

    if (n > (ssize_t)size || (n < 0 && (n != -EPROTO || err[0] == '\0')))
        abort();
    return 0;
}
