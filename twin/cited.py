"""Published figures the calibration uses where nothing is measured here, each with its citation.

Transcribed from ../shared/reference/published-figures.md (which names the original sources); no other numbers."""

from __future__ import annotations

from dataclasses import dataclass

FIGURES_PAGE = "shared/reference/published-figures.md"

ML_ENERGY_V2 = (
    "ML.ENERGY leaderboard v2, diffusion, A100-SXM4-40GB at 400 W, PartiPrompts, default scheduler and "
    f"resolution of each pipeline, Zeus energy windows (via {FIGURES_PAGE} §2)"
)
ML_ENERGY_V3 = f"ML.ENERGY leaderboard v3, H100, 1024 px, batch 1 (via {FIGURES_PAGE} §2)"


@dataclass(frozen=True)
class CitedCost:
    """Per-image latency (s) and GPU energy (J) at batch 1 over steps, plus one larger-batch point."""

    model: str
    gpu: str
    resolution: int
    resolution_note: str
    steps: tuple[int, ...]
    latency_image_s: tuple[float, ...]  # batch 1
    energy_image_j: tuple[float, ...]  # batch 1, gross GPU energy (Zeus windows, idle floor included)
    big_batch: int | None  # the larger-batch point, if any
    big_batch_steps: int | None
    big_batch_latency_image_s: float | None
    big_batch_energy_image_j: float | None
    source: str
    pipeline: str


COSTS: dict[str, CitedCost] = {
    "sd-1.5": CitedCost(
        "sd-1.5",
        "a100-sxm4-40gb",
        512,
        "pipeline default of an SD 1.5 architecture (64-latent UNet): 512 px",
        (30, 40, 50),
        (1.087, 1.400, 1.734),
        (307.4, 402.4, 499.5),
        8,
        50,
        0.85,
        326.0,
        ML_ENERGY_V2,
        "openjourney-v4 (SD 1.5 architecture)",
    ),
    "sd-2.1": CitedCost(
        "sd-2.1",
        "a100-sxm4-40gb",
        768,
        "assumed: the page says 'default resolution of each pipeline'; for stabilityai/stable-diffusion-2-1 "
        "that is 768 px (96-latent UNet); not stated by the page",
        (30, 40, 50),
        (1.444, 1.852, 2.293),
        (530.9, 696.8, 871.1),
        8,
        50,
        1.79,
        696.0,
        ML_ENERGY_V2,
        "SD 2.1",
    ),
    "sdxl": CitedCost(
        "sdxl",
        "a100-sxm4-40gb",
        1024,
        "pipeline default of SDXL base 1.0: 1024 px",
        (30, 40, 50),
        (3.394, 4.469, 5.552),
        (1307.3, 1719.7, 2152.8),
        8,
        50,
        5.15,
        2001.0,
        ML_ENERGY_V2,
        "SDXL base 1.0",
    ),
    "sd3.5-medium": CitedCost(
        "sd3.5-medium",
        "h100-cited",
        1024,
        "stated by the source: 1024 px",
        (28,),
        (3.53,),
        (1581.0,),
        None,
        None,
        None,
        None,
        ML_ENERGY_V3,
        "SD3.5-Medium",
    ),
}


@dataclass(frozen=True)
class QualitySeries:
    """Quality scores of one model over steps from one source, on that source's own scale."""

    name: str
    model: str  # the model the source measured (may differ from the card's model: then it is borrowed)
    steps: tuple[int, ...]
    values: tuple[float, ...]
    kind: (
        str  # "clip" (absolute CLIP score, scale fitted) or "relative" (already a share of the 50-step value)
    )
    solver: str
    source: str


#: SD3 paper Table 6: relative CLIP-score drop against 50 steps, (low, high) over its model sizes (larger drop less).
SD3_DROP_RANGE = {5: (0.027, 0.043), 10: (0.0014, 0.0086), 20: (0.0008, 0.0024)}


def sd3_relative_series(pick: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Steps and q = 1 - drop for ``pick`` in {"low", "mid", "high"} drop of the SD3 range (50 steps: q = 1)."""
    which = {"low": lambda lo, hi: lo, "mid": lambda lo, hi: (lo + hi) / 2, "high": lambda lo, hi: hi}[pick]
    steps = (*SD3_DROP_RANGE, 50)
    return steps, (*(round(1 - which(*SD3_DROP_RANGE[s]), 6) for s in SD3_DROP_RANGE), 1.0)


DEEPCACHE = "DeepCache (arXiv 2312.00858v2, Appendix F, Tables 13-14)"
LCM = "LCM (arXiv 2310.04378, Table 1, read via a transcription)"
SD3 = "SD3 paper (arXiv 2403.03206, Table 6)"

SERIES: dict[str, QualitySeries] = {
    s.name: s
    for s in (
        QualitySeries(
            "deepcache-sd15-plms-parti",
            "sd-1.5",
            (15, 20, 25, 30, 35, 40, 45, 50),
            (28.58, 29.15, 29.32, 29.24, 29.24, 29.35, 29.40, 29.51),
            "clip",
            "PLMS, guidance 7.5, 512 px; CLIP = 100 x cosine, OpenCLIP ViT-g-14; PartiPrompts",
            DEEPCACHE,
        ),
        QualitySeries(
            "deepcache-sd15-plms-coco",
            "sd-1.5",
            (15, 20, 25, 30, 35, 40, 45, 50),
            (29.39, 29.82, 29.99, 30.04, 30.09, 30.19, 30.14, 30.24),
            "clip",
            "PLMS, guidance 7.5, 512 px; CLIP = 100 x cosine, OpenCLIP ViT-g-14; COCO2017 5k",
            DEEPCACHE,
        ),
        QualitySeries(
            "lcm-sd21base-ddim",
            "sd-2.1",
            (4, 8),
            (25.89, 29.29),
            "clip",
            "DDIM, w = 8, 512 px (SD v2.1-base); CLIP ViT-g/14; LAION-Aesthetics-6+",
            LCM,
        ),
        QualitySeries(
            "lcm-sd21base-dpmpp",
            "sd-2.1",
            (4, 8),
            (26.64, 29.55),
            "clip",
            "DPM-Solver++, w = 8, 512 px (SD v2.1-base); CLIP ViT-g/14; LAION-Aesthetics-6+",
            LCM,
        ),
        QualitySeries(
            "sd3-relative-drop-mid",
            "sd3.5-medium",
            # SD3.5-Medium (2.5 B) sits inside the paper's size range, so the midpoint of each drop range.
            *sd3_relative_series("mid"),
            "relative",
            "SD3 MM-DiT rectified flow; relative CLIP drop vs 50 steps, midpoint of the published range",
            SD3,
        ),
    )
}

#: Cross-model levels from one source with one CLIP model (SDXL-Lightning, arXiv 2402.13929, Table 2):
#: kept as a note on the sdxl card; no turbo card is written, so they are not used in a fit.
SDXL_LIGHTNING_CLIP = {
    "sdxl-base-euler-32": 26.48,
    "sdxl-turbo-1": 26.36,
    "sdxl-turbo-4": 26.18,
    "lcm-sdxl-1": 23.65,
    "lcm-sdxl-4": 26.09,
}
SDXL_LIGHTNING = "SDXL-Lightning (arXiv 2402.13929, Table 2), COCO val 10k"

#: An independent latency figure for a cross-check only (different harness and solver): ADD / SDXL-Turbo paper
#: (arXiv 2311.17042, Table 2), SD 1.5-based model, A100, DPM-Solver 25 steps: 0.88 s per image.
ADD_SD15_A100 = {
    "steps": 25,
    "latency_image_s": 0.88,
    "source": "ADD / SDXL-Turbo paper (arXiv 2311.17042, Table 2)",
}

#: The SD-family UNet quality series: SD 1.5 PLMS (15-50 steps, DeepCache) and SD 2.1-base DDIM/DPM++ (4 and 8
#: steps, LCM). No single UNet model has published figures over the twin's whole step range (6-42), so one
#: curve is fitted to the pooled series and each UNet card says which part is its own and which is borrowed.
SD_UNET_SERIES = (
    "deepcache-sd15-plms-parti",
    "deepcache-sd15-plms-coco",
    "lcm-sd21base-ddim",
    "lcm-sd21base-dpmpp",
)

#: Which series each card's quality curve is fitted to, and the assumption that makes it apply.
QUALITY_PLAN: dict[str, tuple[tuple[str, ...], str | None]] = {
    "sd-1.5": (
        SD_UNET_SERIES,
        "assumed: below 15 steps (no SD 1.5 figure) the rise follows SD 2.1-base (LCM, DDIM and DPM-Solver++ at "
        "4 and 8 steps, same UNet family); 15-50 steps are SD 1.5's own PLMS figures (DeepCache)",
    ),
    "sd-2.1": (
        SD_UNET_SERIES,
        "assumed: SD 2.1 saturates like SD 1.5 (same UNet family); its own figures (LCM, SD 2.1-base at 512 px, "
        "4 and 8 steps) fix the low-step rise, the SD 1.5 PLMS series (15-50 steps) fix the saturation",
    ),
    "sdxl": (
        SD_UNET_SERIES,
        "assumed: SDXL base follows the SD 1.5/2.1 UNet curve; the only published SDXL base CLIP figure is one "
        "point (26.48 at 32 Euler steps, SDXL-Lightning Table 2), which cannot fix a curve",
    ),
    "sd3.5-medium": (
        ("sd3-relative-drop-mid",),
        "assumed: SD3.5-Medium (2.5 B) drops like the middle of the SD3 paper's model sizes (midpoint of each "
        "published relative-drop range); the figures are relative drops and are used as such (q = 1 - drop)",
    ),
}
