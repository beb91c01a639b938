"""Reference apps the notebooks build, as factories: create_app(...) returns a Flask or FastAPI app."""
