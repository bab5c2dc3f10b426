"""A new Flask application (`corral new flask`): ``WSGI_APP=app.app`` points Corral's Python
worker at ``app`` below. Edit it; deploy.py installs requirements.txt into ./venv."""

from flask import Flask, render_template

app = Flask(__name__)


@app.route("/")
def index():
    return render_template("index.html", title="Flask on Corral")


@app.route("/hello/<name>")
def hello(name):
    return render_template("index.html", title=f"Hello, {name}!")
