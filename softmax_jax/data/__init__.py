"""Data in: every source of examples, and how they reach the devices.

  datasets.py   the Dataset; TFDS (cached as .npz), the pixel rule, the
                validation split, standardization, fingerprints
  user_data.py  your own features: npy (memory-mapped), npz and csv folders
  feed.py       minibatches to the devices: on-device gathers or streamed
                chunks, each host its share
  images.py     image files read for --mode=predict
  embeddings.py a data set through an embedding (random features, a
                pretrained network), written as an npy: folder in
                resumable chunks
"""
