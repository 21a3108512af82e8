"""`python -m samexp.evaluate`: a saved run on another dataset; compare: zero-shot against fine-tuned."""
