"""Evaluate a pretrained model on any preprocessed or ingested dataset: the Ray Tune fine-tuning fan-out
(inputs x setting x label fraction x seed x calibration) and zero-shot, as tables and plots.
(jobs/fanout.py and jobs/zeroshot.py run either alone.)

    python jobs/ingest.py --dataset mhealth --source /data/MHEALTHDATASET --out runs/eval
    python jobs/evaluate.py --config jobs/configs/evaluate.yaml --set evaluate.dataset=mhealth
"""

from _common import evaluation_job, run


def main() -> None:
    evaluation_job(__doc__.splitlines()[0], fanout=True, zero_shot=None)


if __name__ == "__main__":
    run(main)
