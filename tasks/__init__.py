"""Stage logic: plain typed functions and the thin Prefect tasks over them."""
