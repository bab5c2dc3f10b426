-- Every request asks the server to close the connection after the response: wrk then opens a
-- new connection for the next request, so each request pays for a TCP accept and close.
wrk.headers["Connection"] = "close"
