"""What starts runs by itself: Timer schedules (schedules.py, fired by scheduler.py in every
worker) and Event entry nodes (events.py, started by emit). When a Timer fires is
durableflow.timing's business."""
