"""The start page of a new Python WSGI project (Helicon Zoo's "Python WSGI project" template):
the service information, as Zoo's worker showed on a fresh application.

``WSGI_APP=welcome.application`` (web.config) or ``wsgi_app = "welcome:application"``
(corral.toml) points Corral's Python worker here. Write your application, list what it needs in
requirements.txt (the deploy script installs it into ./venv), and point WSGI_APP at it.
"""

from corral.worker import info

INTRO = """
<p>It works: this is <code>welcome.py</code>, a WSGI application served by Corral's Python
worker from this site's own virtualenv (<code>venv</code>, made by <code>deploy.py</code>).</p>
<ol>
<li>Write your application (any WSGI callable) and list its packages in
<code>requirements.txt</code>;</li>
<li>point <code>WSGI_APP</code> at it (<code>package.module:application</code>, or a factory such
as <code>myapp:create_app()</code>); for Django set <code>DJANGO_SETTINGS_MODULE</code>;</li>
<li>save <code>deploy.py</code> (or touch it) to run it again: the next request shows its output
while it installs, then your application.</li>
</ol>
<p>Set <code>DEVELOPMENT_MODE</code> to see the service details below and, on this machine, a
traceback page for errors. Secrets in the tables (cookies, tokens, passwords, keys) are
masked.</p>
"""


def application(environ, start_response):
    return info.page(environ, start_response, title="Python WSGI project", intro_html=INTRO)
