"""softmax_jax: softmax regression (multinomial logistic regression) in JAX.

Modules, one concept each:
  config      the run's hyperparameters and their validation
  data        image data sets (the real Fashion-MNIST via TFDS), cached as arrays
  model       init_params / logits of the linear layer o = xW + b
  losses      stable log-softmax / softmax and the LOSSES registry
  optimizers  the OPTIMIZERS registry (optax)
  train       the compiled epoch (lax.scan) and the host training loop
  workdir     what a run writes: metrics, summary, params
  plotting    the training-curve figure
  errors      UserError: mistakes reported in one line, without a traceback

Importing the package imports nothing heavy, so that bad input is refused fast.
"""
