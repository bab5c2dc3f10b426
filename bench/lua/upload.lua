-- POST a 1 MiB body (with its Content-Length) that the app reads to the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("0123456789abcdef", 65536)
