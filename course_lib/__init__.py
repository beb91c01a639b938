"""course_lib — helper library and reference apps for the ML model deployment course (chapter 1)."""

from course_lib.doctor import doctor
from course_lib.servers import serve, serve_script

__all__ = ["doctor", "serve", "serve_script"]
__version__ = "0.1.0"
