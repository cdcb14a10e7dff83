"""The WSGI applications the HTTP rows of ``benches/compare.py`` serve.

A module of their own, small and free of any library import, because granian
loads the application by name (``wsgi_apps:hello_app``) in its worker process,
while the gevent-style servers import the same objects: every server runs the
very same application code.
"""

import json

HELLO_BODY = b"Hello, World!"
FLASK_MESSAGE = {"message": "Hello, World!"}


def hello_app(environ, start_response):
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))]
    )
    return [HELLO_BODY]


def make_flask_app():
    """A small Flask application: one route answering JSON.

    A factory (granian's ``--factory``), so that loading the hello world
    never imports Flask.
    """
    from flask import Flask, jsonify

    app = Flask("bench")

    @app.route("/")
    def index():
        return jsonify(FLASK_MESSAGE)

    return app


def is_flask_body(body: bytes) -> bool:
    try:
        return json.loads(body) == FLASK_MESSAGE
    except ValueError:
        return False
