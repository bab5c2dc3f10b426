import django
from django.http import HttpResponse
from django.utils.html import escape

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Django on Corral</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; }}</style>
</head><body>
<h1>Django on Corral</h1>
<p>It works: this is <code>mysite/views.py</code>, Django {version} in this site's own virtualenv
(<code>venv</code>, made by <code>deploy.py</code>, which also applied the migrations to
<code>db.sqlite3</code> and collected the static files into <code>static/</code>).</p>
<p><a href="{admin}">The admin</a>: make its first user with
<code>venv/bin/python manage.py createsuperuser</code> in this folder.</p>
</body></html>
"""


def index(request):
    admin = escape(request.build_absolute_uri("admin/"))
    return HttpResponse(PAGE.format(version=escape(django.get_version()), admin=admin))
