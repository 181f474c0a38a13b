"""The Ray Tune fine-tuning fan-out alone (inputs x setting x label fraction x seed x calibration) of a pretrained
model on one dataset; results.md, trials.csv, summary.csv and macro_f1.png under <run>/results/<dataset>/.

    python jobs/fanout.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_job, run


def main() -> None:
    evaluation_job(__doc__.splitlines()[0], fanout=True, zero_shot=False)


if __name__ == "__main__":
    run(main)
