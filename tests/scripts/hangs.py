"""Never ends: the supervisor's timeout must stop it."""
import time

print("starting", flush=True)
while True:
    time.sleep(0.5)
