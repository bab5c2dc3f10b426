"""The front server: HTTP/1.1 from clients, proxied to each application's backend pool.

- ``server``: listening sockets, the shared per-server state, the deadline sweep, graceful stop;
- ``connection``: one client connection (asyncio Protocol): parse, route, lease, relay;
- ``routes``: (Host, path) -> application, the seam for the configuration model;
- ``cgienv``: the CGI/1.1 variables (FastCGI PARAMS) and the request header policy;
- ``target``: the request path (percent-decoding, dot segments, the ``%2F`` choice);
- ``proxy``: the backend's CGI head -> the client's response head (framing, hop-by-hop);
- ``errorpages``: the HTML error responses; ``accesslog``: Combined Log Format lines;
- ``settings``: limits and timeouts (``FrontSettings``, from the configuration model).
"""
