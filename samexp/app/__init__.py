"""The demo (`python -m samexp.app`): a run's fine-tuned SAM against zero-shot SAM in the browser."""
