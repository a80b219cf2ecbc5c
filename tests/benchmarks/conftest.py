"""A tiny saved bundle (random-init DCGAN, ngf=16: prunable by half with round_to 8): the stage's tests never train."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    torch.manual_seed(0)
    return zoo_bundle("dcgan", zoo.build("dcgan", ngf=16), ngf=16).save(tmp_path_factory.mktemp("b") / "tiny")
