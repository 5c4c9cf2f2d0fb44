#include "http.h"

#include <string.h>

const char *fg_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

void fg_status_json(struct fg_buf *b, int code, const char *reason, const char *message)
{
    fg_buf_adds(b, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                   "\"status\":\"Failure\",\"message\":");
    fg_buf_json_str(b, message, strlen(message));
    fg_buf_adds(b, ",\"reason\":");
    fg_buf_json_str(b, reason, strlen(reason));
    fg_buf_printf(b, ",\"code\":%d}\n", code);
}

void fg_iceberg_error_json(struct fg_buf *b, int code, const char *type, const char *message)
{
    fg_buf_adds(b, "{\"error\":{\"message\":");
    fg_buf_json_str(b, message, strlen(message));
    fg_buf_adds(b, ",\"type\":");
    fg_buf_json_str(b, type, strlen(type));
    fg_buf_printf(b, ",\"code\":%d}}\n", code);
}

/* Decodes a form-encoded run into out; -1 on a bad escape, a NUL, or no room. */
static int form_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = fg_hexval((unsigned char)s[i + 1]), lo = fg_hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= outsz)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int fg_form_get(const char *body, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    int found = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i >= nl + 1 && memcmp(body + i, name, nl) == 0 && body[i + nl] == '=') {
            if (found++ || form_decode(body + i + nl + 1, end - i - nl - 1, out, outsz) != 0)
                return -1; /* repeated fields are ambiguous: refuse */
        }
        i = end + 1;
    }
    return found ? 0 : -1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int fg_basic_credentials(const char *value, size_t len, char *id, size_t idsz, char *secret,
                         size_t secretsz)
{
    size_t i = 0;
    while (i < len && (value[i] == ' ' || value[i] == '\t'))
        i++;
    if (len - i < 6 || !fg_strn_prefixi(value + i, len - i, "basic "))
        return -1;
    i += 6;
    while (i < len && value[i] == ' ')
        i++;
    char raw[1024];
    size_t o = 0, bits = 0;
    uint32_t acc = 0;
    for (; i < len && value[i] != '='; i++) {
        int v = b64val((unsigned char)value[i]);
        if (v < 0 || o + 1 >= sizeof(raw))
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    while (i < len && value[i] == '=')
        i++;
    while (i < len && value[i] == ' ')
        i++;
    if (i != len)
        return -1;
    const char *colon = memchr(raw, ':', o);
    int rc = -1;
    if (colon && form_decode(raw, (size_t)(colon - raw), id, idsz) == 0 &&
        form_decode(colon + 1, o - (size_t)(colon - raw) - 1, secret, secretsz) == 0)
        rc = 0;
    memset(raw, 0, sizeof(raw));
    return rc;
}
