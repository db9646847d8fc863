"""The Gradio web app: layout (demo) and the actions it calls."""
