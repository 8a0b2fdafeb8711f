"""Time to align the face of a 512 x 512 photo (scikit-image's astronaut): MTCNN detection, then the FFHQ alignment.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/face_alignment.py [--threads 2] [--repeats 5]

Each figure is the median of `--repeats` timed calls after one untimed call (which loads the detector's weights).
Alignment is timed at 256 and 1024 px, with the default supersampling (the photo's own pixel density in the crop) and
with FFHQ's fixed 4x; "total" is detection plus the default alignment to 1024 px (`align_photo`).
"""
from __future__ import annotations

import argparse

import torch
from PIL import Image
from render_speed import timed

from contrafeat.editing.face_alignment import align_face, align_photo, detect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    try:
        import skimage.data
    except ImportError:
        raise SystemExit("the benchmark photo comes from scikit-image: pip install scikit-image") from None
    photo = Image.fromarray(skimage.data.astronaut())
    faces = detect(photo)
    landmarks = faces[0].landmarks
    print(f"astronaut {photo.size[0]} x {photo.size[1]}, {len(faces)} face(s), {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print("| step | seconds |\n| --- | --- |")
    print(f"| detection (MTCNN) | {timed(lambda: detect(photo), args.repeats):.3f} |")
    for resolution in (256, 1024):
        for supersampling, label in ((None, "default"), (4, "FFHQ's 4x")):
            seconds = timed(lambda r=resolution, k=supersampling: align_face(photo, landmarks, r, supersampling=k), args.repeats)
            print(f"| alignment to {resolution} px, {label} | {seconds:.3f} |")
    print(f"| total: detection + alignment to 1024 px (`align_photo`) | {timed(lambda: align_photo(photo, 1024), args.repeats):.3f} |")


if __name__ == "__main__":
    main()
