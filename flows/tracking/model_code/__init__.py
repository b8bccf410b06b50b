"""MLflow models-from-code files: each is copied into a logged model and run when it loads.

They import only numpy, pandas and mlflow, so a model loads where bp-pipeline is not installed.
"""
