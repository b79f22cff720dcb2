"""Serving: the pyfunc models (`pyfunc`), the request checks (`inputs`), the PNG form
(`png`), and how training logs a model (`logged_model`).

Input forms (both models; the answer comes back in the form it came in), for a model of
image shape (C, H, W) -- MNIST: (1, 28, 28):

- a float tensor (N, H, W) (grey only), (N, C, H, W) or (N, C*H*W) with values in [0, 1]
  -- over REST `{"inputs": [...]}` or `{"instances": [...]}`;
- a column `image` of base64 PNGs (8-bit grayscale or RGB, HxW) -- over REST
  `{"dataframe_split": {"columns": ["image"], "data": [["iVBOR..."]]}}` (or
  `dataframe_records`, or `{"inputs": {"image": [...]}}`); answered with a column `image`
  of base64 PNGs. Parsing a JSON float costs MLflow's server far more than a PNG.
"""
