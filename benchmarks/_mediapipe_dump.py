"""Step 1 of ``python -m benchmarks video_proxy``, run by the benchmark itself in its MediaPipe environment (which has
no zsseg_rt): each clip's frames and MediaPipe's per-frame person probabilities, into ``OUT/NAME.npz``.

    ENV/bin/python benchmarks/_mediapipe_dump.py OUT '{"vtest": ["/usr/share/.../vtest.avi", 0, 30], ...}'

MediaPipe's selfie segmenter (the general model, ``model_selection=0``), a fresh graph per frame: nothing is carried
from one frame to the next, so the scores are per-frame scores, as the Engine's are.
"""

import json
import sys
from pathlib import Path


def main(out: str, clips: str) -> int:
    import cv2
    import mediapipe
    import numpy as np

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (path, start, count) in json.loads(clips).items():
        capture = cv2.VideoCapture(path)
        frames, index = [], 0
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                print(f"{path} gave {len(frames)} frames from frame {start}, {count} wanted", file=sys.stderr)
                return 1
            if index >= start:
                frames.append(frame)
            index += 1
        masks = []
        for frame in frames:
            with mediapipe.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as model:
                result = model.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            masks.append(np.asarray(result.segmentation_mask, dtype=np.float32))
        person = np.stack(masks)
        np.savez_compressed(folder / f"{name}.npz", frames=np.stack(frames), person=person)
        print(f"  {name}: {len(frames)} frames, person on {100 * float((person > 0.5).mean()):.2f} % of the pixels")
    (folder / "made_by.json").write_text(json.dumps({"mediapipe": mediapipe.__version__, "clips": json.loads(clips)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
