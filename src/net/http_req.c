#include "net/http_req.h"

#include <errno.h>
#include <string.h>

const char *fg_http_head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
		    buf[i + 3] == '\n')
			return buf + i + 4;
	return NULL;
}

int fg_http_req_parse(const char *buf, size_t len, struct fg_http_req *out)
{
	memset(out, 0, sizeof(*out));
	const char *end = fg_http_head_end(buf, len);
	if (!end)
		return len >= FG_HTTP_MAX_HEAD ? -E2BIG : -EAGAIN;
	size_t head = (size_t)(end - buf);
	if (head > FG_HTTP_MAX_HEAD)
		return -E2BIG;
	const char *eol = memchr(buf, '\r', head);
	const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp1 || sp1 == buf || (size_t)(sp1 - buf) >= sizeof(out->method))
		return -EINVAL;
	const char *path = sp1 + 1;
	const char *sp2 = memchr(path, ' ', (size_t)(eol - path));
	if (!sp2 || sp2 == path || (size_t)(sp2 - path) >= sizeof(out->path))
		return -EINVAL;
	const char *ver = sp2 + 1;
	if ((size_t)(eol - ver) != 8 || memcmp(ver, "HTTP/1.", 7) != 0 ||
	    (ver[7] != '0' && ver[7] != '1'))
		return -EINVAL;
	for (const char *p = buf; p < sp1; p++)
		if (*p < 'A' || *p > 'Z')
			return -EINVAL;
	for (const char *p = path; p < sp2; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -EINVAL;
	memcpy(out->method, buf, (size_t)(sp1 - buf));
	memcpy(out->path, path, (size_t)(sp2 - path));
	out->minor = ver[7] - '0';
	return (int)head;
}
