"""Edit a photo and get the whole photo back: detect -> align -> invert (with figures) -> edit -> paste back.

`edit_photo` runs one engine on the chosen faces of a photo (the largest, one by index, or all), each
inverted by `fidelity.invert_face` and, after PTI, edited with its own tuned generator. `save_photo_edit`
writes the outputs into a temporary folder first and renames them into place only when all are written,
so a failure never leaves half the files.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from styleclip.errors import InputError
from styleclip.photo.fidelity import FaceInversion, invert_face
from styleclip.photo.paste import MaskConfig, paste_faces
from styleclip.types import EditResult, Latent, Prompt

MIN_FACE_PIXELS = 24  # a face whose aligned square is smaller than this has too little detail to invert


@dataclass
class FaceEdit:
    """One face of the photo: how it was aligned and inverted, and its edit."""

    aligned: object  # faces.AlignedFace
    inversion: FaceInversion
    result: EditResult

    @property
    def edited(self) -> torch.Tensor:
        return self.result.image[0]


@dataclass
class PhotoEdit:
    photo: Image.Image
    edited_photo: Image.Image
    faces: list[FaceEdit] = field(default_factory=list)

    def metadata(self) -> dict:
        out = {"size": list(self.photo.size), "faces": []}
        for f in self.faces:
            m = f.result.metrics
            out["faces"].append({
                "index": getattr(f.aligned.face, "index", None),
                "quad": [[round(float(v), 3) for v in p] for p in f.aligned.quad],
                "inversion": f.inversion.report(),
                "engine": f.result.engine,
                "metrics": {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in m.items()
                            if isinstance(v, (int, float, str, list))},
            })
        return out


def parse_face(text: str | int | None) -> int | str | None:
    """--face: None (the largest), 'all', or an index."""
    if text is None or isinstance(text, int):
        return text
    if str(text).strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--face must be a face index (see `styleclip faces`) or 'all', got {text!r}") from None


def find_faces(photo: Image.Image, *, size: int, face=None, detector=None, source: str = "the photo"):
    """The AlignedFaces to edit: the largest (face None), face number `face`, or every face ('all')."""
    from styleclip.photo.faces import align_face, detect_faces, select_face

    found = detect_faces(photo, detector=detector)
    chosen = found if face == "all" and found else [select_face(found, None if face == "all" else face, source=source)]
    aligned = []
    for f in chosen:
        a = align_face(photo, f.landmarks, size=size, face=f)
        side = float(((a.quad[3] - a.quad[0]) ** 2).sum() ** 0.5)
        if side < MIN_FACE_PIXELS:
            if face == "all" and len(chosen) > 1:
                continue
            raise InputError(f"the face in {source} is too small ({side:.0f} px across its aligned square, at least "
                             f"{MIN_FACE_PIXELS} needed): use a larger photo of the face")
        aligned.append(a)
    if not aligned:
        raise InputError(f"every face in {source} is too small (at least {MIN_FACE_PIXELS} px needed)")
    return aligned


def edit_photo(photo: Image.Image, aligned_faces, generator, editor, prompt: Prompt, *, invert: str = "auto",
               invert_options: dict | None = None, mask: MaskConfig = MaskConfig(), on_face=None,
               progress=None) -> PhotoEdit:
    """Invert and edit each aligned face with `editor` (built for `generator`), paste every edit back.

    invert_options: keyword arguments of fidelity.invert_face (encoder, identity, projector, pti, target,
    perceptual, ...). on_face(k, FaceInversion): called after each inversion (to print its figures)."""
    from styleclip.photo.pti import with_generator

    edits = []
    for k, aligned in enumerate(aligned_faces):
        inv = invert_face(aligned.image, generator, method=invert, progress=progress, **(invert_options or {}))
        if on_face is not None:
            on_face(k, inv)
        engine = editor if inv.generator is generator else with_generator(editor, inv.generator)
        result = engine.edit(Latent(inv.w_plus, labels=(f"face{k}",)), prompt)
        edits.append(FaceEdit(aligned, inv, result))
    pasted = paste_faces(photo, [(e.edited, e.aligned) for e in edits], mask=mask)
    return PhotoEdit(photo, pasted, edits)


def save_photo_edit(out_dir: str | Path, label: str, edit: PhotoEdit, *, crop_only: bool = False) -> dict[str, Path]:
    """Write <label>_edited.png (the whole photo, or with crop_only the edited aligned crop of the first face),
    per face <label>_face<k>_{crop,before_after}.png and _latent.pt, and <label>_edit.json (inversion figures,
    engine metrics). All files appear together or not at all."""
    from styleclip.util.imaging import from_pil, grid, to_pil, upscale_for_viewing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {}
    files[f"{label}_edited.png"] = to_pil(edit.faces[0].edited) if crop_only else edit.edited_photo
    for k, f in enumerate(edit.faces):
        size = f.edited.shape[-1]
        panels = [from_pil(f.aligned.image, size)[0], f.inversion.reconstruction[0].cpu(), f.edited.cpu()]
        files[f"{label}_face{k}_crop.png"] = to_pil(f.edited)
        files[f"{label}_face{k}_before_after.png"] = upscale_for_viewing(grid(panels))
        lat = f.result.latent
        files[f"{label}_face{k}_latent.pt"] = lat.cpu() if isinstance(lat, torch.Tensor) else [s.cpu() for s in lat]
    files[f"{label}_edit.json"] = {**edit.metadata(), "crop_only": crop_only}
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        for name, value in files.items():
            path = tmp / name
            if isinstance(value, Image.Image):
                value.save(path)
            elif isinstance(value, dict):
                path.write_text(json.dumps(value, indent=1, default=float))
            else:
                torch.save(value, path)
        written = {}
        for name in files:
            os.replace(tmp / name, out / name)
            written[name] = out / name
        return written
    finally:
        for p in tmp.iterdir():
            p.unlink(missing_ok=True)
        tmp.rmdir()
