"""Front ends built on the styleclip library: the Gradio web app (`apps.gradio_app`, needs the `app` extra)."""
