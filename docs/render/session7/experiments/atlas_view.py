"""The baked teeth atlas of the demo (from the cached samples) as a png, with the frame it came
from: python atlas_view.py OUT.png"""
import sys
from dataclasses import replace
import numpy as np, cv2, torch, common
from avatar.render.model import DeferredRenderer
from avatar.render.train_mouth import bake_teeth_atlas
from avatar.render.teeth import ATLAS_SHAPE

s = common.samples(); base = common.shipped()
model = DeferredRenderer(replace(base.config, teeth_atlas=ATLAS_SHAPE))
model.load_state_dict(base.state_dict(), strict=False)
frame = bake_teeth_atlas(model, s)
a = model.mouth.teeth_atlas.permute(1, 2, 0).numpy()
rgb = (a[..., :3] * 255).astype(np.uint8)
shown = (rgb * (0.3 + 0.7 * a[..., 3:])).astype(np.uint8)
real = s.real[frame]
pic = cv2.resize(shown, (real.shape[1], int(real.shape[1] * shown.shape[0] / shown.shape[1])), interpolation=cv2.INTER_NEAREST)
out = np.concatenate([real, pic], 0)
cv2.imwrite(sys.argv[1], cv2.cvtColor(cv2.resize(out, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR))
print("frame", frame, "valid texels", int(a[..., 3].sum()), "of", a[..., 3].size)
