"""Zero-shot alone (top-1/3/5 Macro F1, per input and calibration) of a pretrained model, and of
evaluate.zero_shot_models, on one dataset; zeroshot.md and zeroshot.csv under <run>/results/<dataset>/.

    python jobs/zeroshot.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_job, run


def main() -> None:
    evaluation_job(__doc__.splitlines()[0], fanout=False, zero_shot=True)


if __name__ == "__main__":
    run(main)
