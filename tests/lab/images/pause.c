/*
 * The lab's pod sandbox process (the "pause" container of every pod): it holds the pod's
 * namespaces while the pod's containers come and go, reaps the orphans the kernel hands to it
 * as the pod's PID 1, and exits at once on SIGINT or SIGTERM. Built with `gcc -static`, so its
 * image needs nothing else.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) {
	(void)signal_number;
	_exit(0);
}

static void reap(int signal_number) {
	(void)signal_number;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction action;
	memset(&action, 0, sizeof action);
	action.sa_handler = stop;
	if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
		return 1;
	}
	action.sa_handler = reap;
	action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &action, NULL) != 0) {
		return 1;
	}
	for (;;) {
		pause();
	}
}
