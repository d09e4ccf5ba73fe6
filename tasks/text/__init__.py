"""Reading and text: inputs found and decoded, books and tables to paragraphs, speech normalization, chunking."""
