"""`voxbatch bench`: voxbatch against a plain synthesis loop on this machine, and the GPU suite."""
