"""The front server: HTTP/1.1 from clients, proxied to each application's backend pool.

- ``server``: listening sockets, the shared per-server state, the deadline sweep, graceful stop;
- ``http1``: one HTTP/1.1 client connection (asyncio Protocol): parsing, keep-alive, lingering,
  deadlines; the ``ClientStream`` of its exchanges; ``http1response``: its response framing;
- ``exchange``: one request's life, protocol-neutral: route, lease, begin, relay, release, the
  503/502/504 policy, deploy-output streaming; ``tunnel``: the Upgrade/WebSocket tunnel;
- ``stream``: what an exchange needs of the client side (``ClientStream``, ``Deadline``);
  ``context``: what a connection needs of the server (``FrontContext``) and back;
- ``routes``: (Host, path) -> ``AppRoute``, the seam for the configuration model;
- ``staticserve``: static files, answered like a backend's response;
- ``cgienv``: the CGI/1.1 variables (FastCGI PARAMS) and the request header policy;
- ``target``: the request path (percent-decoding, dot segments, the ``%2F`` choice);
- ``proxy``: the backend's head -> the client's fields (hop-by-hop, Content-Length); the bytes
  are written by ``corral.protocol.http1.writer``;
- ``errorpages``: the HTML error responses; ``accesslog``: Combined Log Format lines;
- ``settings``: limits and timeouts (``FrontSettings``, from the configuration model).
"""
