"""mgpu_core: what is measured: one configuration on one process group (SimpleCNN on CIFAR-10 or your model;
single, DataParallel, DistributedDataParallel, FSDP). Importing the package loads no torch; its modules that train do.

Torch-free: config, names, errors, cli_args, bandwidth, files. Everything else imports torch.
"""
