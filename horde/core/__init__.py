"""The multi-head core: a shared MLP trunk with one linear head per prediction.

This room imports nothing above it. It holds the seed API's ``MultiHeadMLPLearner`` and what it
stands on: state and result types, boundary checks, the trunk's forward pass with its tape and
hand-written backward pass, stacked-head traces and steps, optimizers (LMS, IDBD, Autostep),
ObGD bounding, online normalizers, sparse initialisation, and the scan/vmap learning loops.
"""
