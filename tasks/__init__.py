"""voxbatch building blocks: plain, testable modules that the Prefect flows in `flows/` compose."""
