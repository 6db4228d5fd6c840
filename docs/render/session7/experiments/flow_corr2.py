"""Second sweep of flow_corr.py: DIS presets and settings, with the time per window.
python flow_corr2.py"""
import time, cv2
import flow_corr as fc

_calc = []
orig = cv2.DISOpticalFlow_create


def timed_create(preset):
    d = orig(preset)
    if preset == 99:
        d = orig(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        d.setFinestScale(1)
    return d


if __name__ == "__main__":
    cv2.DISOpticalFlow_create = timed_create
    U, FA, M = fc.U, fc.FA, fc.M
    V = [("mesh only", None, 0, 0, 0, 0),
         ("first s1.5 fast sm3", "first", 1.5, FA, 3, 3),
         ("first s1.5 fast-finest1 sm3", "first", 1.5, 99, 3, 3),
         ("first s1 medium sm3", "first", 1.0, M, 3, 3),
         ("first s1.5 medium sm5", "first", 1.5, M, 5, 3),
         ("first s1.5 medium sm3 lim1.5", "first", 1.5, M, 3, 1.5)]
    fc.main(V)
    import numpy as np
    a = np.random.rand(128, 176).astype(np.float32)
    a = (cv2.GaussianBlur(a, (0, 0), 2) * 255).astype(np.uint8); b = np.roll(a, 1, 0)
    for p in (U, FA, 99, M):
        d = timed_create(p); d.calc(a, b, None); t = time.perf_counter()
        for _ in range(100):
            d.calc(a, b, None)
        print("preset", p, f"{(time.perf_counter() - t) * 10:.2f} ms per 128x176 window")
