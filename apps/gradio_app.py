"""Launch the styleclip web app from a checkout: `python apps/gradio_app.py --model toy-faces` (the same as
`styleclip serve`; the app itself is `styleclip.app`)."""
from styleclip.app.demo import main

if __name__ == "__main__":
    main()
