# Fine-tune ImageNet EfficientNet-B0 on CIFAR-100 (paper Table 5: EfficientNet-B0, 88.1% top-1):
# the CIFAR-10 recipe (input size, augmentation, schedule: see that config) with CIFAR-100's 100 classes.
# Data: data/cifar100/cifar-100-python/ of the official python archive (never downloaded).
_base_ = ['./efficientnet-b0_8xb32-ft_cifar10-224px.py']

num_classes = 100
dataset_type = 'CIFAR100'  # mmpretrain's name; the loaders below read the offline copy
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type='mmeffnet.OfflineCIFAR100', data_root='data/cifar100'))
val_dataloader = dict(dataset=dict(type='mmeffnet.OfflineCIFAR100', data_root='data/cifar100'))
test_dataloader = val_dataloader
