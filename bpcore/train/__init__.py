"""The trainers: gradient descent on the line fit, the one-neuron chain and a fully connected network by
mini-batch SGD, with what they measure on the way (gradient checks, sharpness, the stability limit) and
the state a network's training resumes from."""
