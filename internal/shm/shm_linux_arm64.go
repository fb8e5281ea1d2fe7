package shm

// sysMemfdCreate is memfd_create's system call number.
const sysMemfdCreate = 279
